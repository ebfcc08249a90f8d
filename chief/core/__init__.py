"""Chief's core: workflows, engine, bus, worker, store and the plugin manager.

`chief.core` never imports `chief.plugins` or `chief.chat_app`; it finds plugins through pluggy.
"""
