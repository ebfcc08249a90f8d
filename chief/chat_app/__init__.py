"""The chat: a Chainlit app over core (`app.py`), our data layer, live run views. Start it with `chief chat`."""
