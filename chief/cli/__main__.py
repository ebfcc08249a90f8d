"""`python -m chief.cli` is `chief`."""

from .main import main

main()
