"""Chief's built-in plugins: small single-purpose modules loaded by name from `chief.core.plugins`.

Each module implements hooks of `chief.core.hookspecs`; they import only `chief.core`.
"""
