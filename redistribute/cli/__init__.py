"""The command line on top of every stage: ``redistribute MODEL -t d``, ``inspect``, ``compare``, ``plot``, ``train``, ``study``.

:mod:`~redistribute.cli.commands` declares the commands (typer) and only strings the stages together;
:mod:`~redistribute.cli.render` prints (rich tables on stderr/stdout, one-line errors);
:mod:`~redistribute.cli.compare`, :mod:`~redistribute.cli.train` and :mod:`~redistribute.cli.study` hold the tables and progress of those commands.
"""

from __future__ import annotations

from .commands import app as app
from .commands import main as main

__all__ = ["app", "main"]
