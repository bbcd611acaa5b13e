"""`speechdistill teacher` (placeholder until implemented)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="(not implemented yet)")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("teacher")))
