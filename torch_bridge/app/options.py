"""Argument-parsing pieces shared by the verbs: the parser class (one-line errors), the
``--device`` option (one type function, so every verb accepts and refuses the same names), and a
help formatter that shows defaults."""
from __future__ import annotations

import argparse
import re
from typing import NoReturn

__all__ = ["CliParser", "DefaultsHelpFormatter", "device_type", "add_device_argument"]

DEVICE_CHOICES = "cpu, cuda, cuda:N or auto"


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``prog: error: ...``) rather than the
    full usage, which for ``train`` runs to a screenful; ``--help`` still shows it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help, unless the option is a flag, its default is
    empty (None, "", []) or the help already speaks of its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or not action.option_strings or action.nargs == 0 or default is None \
                or default is argparse.SUPPRESS or (isinstance(default, (str, list)) and not default):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def device_type(text: str) -> str:
    """argparse ``type`` of ``--device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when
    present). A CUDA device this machine does not have is refused here, in one line, rather than
    by torch's lazy CUDA initialisation deep inside the run."""
    name = text.strip().lower()
    if name in ("auto", "cpu"):
        return name
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (expected {DEVICE_CHOICES})")
    import torch

    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available ({why}); use --device cpu or auto")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return name


def add_device_argument(parser, default: str = "auto", extra: str = "") -> argparse.Action:
    """The ``--device`` option (``device_type``); ``extra`` is appended to its help."""
    return parser.add_argument("--device", type=device_type, default=default, metavar="DEVICE",
                               help=f"{DEVICE_CHOICES} (auto: a GPU when present; default {default})"
                                    + (f"; {extra}" if extra else ""))

