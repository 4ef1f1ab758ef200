"""Kernelspec templates for Jupyter Enterprise Gateway, one directory per process proxy (package data)."""
