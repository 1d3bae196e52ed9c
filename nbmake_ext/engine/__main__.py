"""``python -m nbmake_ext.engine``: an engine process (see main.py)."""

from .main import main

main()
