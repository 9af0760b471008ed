"""Entry point for ``python -m pydl``."""

print("pydl", __import__("pydl").cpu_info())
