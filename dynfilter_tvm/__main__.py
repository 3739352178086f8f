"""``python -m dynfilter_tvm`` and the ``dynfilter-tvm`` command.

The one module of the core that reaches the application layer (``torch_bridge.app.cli``, where
every verb lives); nothing imports it, so the core itself stays free of torch.
"""
from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from torch_bridge.app.cli import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
