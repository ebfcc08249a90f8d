"""The `chief` command line."""
