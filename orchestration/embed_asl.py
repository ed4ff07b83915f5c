"""Copy each *.asl.json into its DefinitionString block of template.yaml (the .json is the source).

CloudFormation cannot read a local file at deploy time, and moto reads only DefinitionString, so
the template carries the definition inline; this script keeps the two identical. Run it after
editing the ASL; ``--check`` exits 1 when the template is out of date (tests call it too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASL = HERE / "statemachine.asl.json"
# Every definition the template embeds; each has its own "# BEGIN <name>" / "# END <name>" block.
ASL_FILES = (ASL, HERE / "backfill.asl.json")
TEMPLATE = HERE / "template.yaml"
BEGIN = "# BEGIN statemachine.asl.json"
END = "# END statemachine.asl.json"
KEY = "DefinitionString: !Sub |"


def embedded(template_text: str, asl_text: str, name: str = ASL.name) -> str:
    """Return ``template_text`` with ``name``'s block between the markers set to ``asl_text``."""
    lines = template_text.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip().startswith(f"# BEGIN {name}"))
    end = next(i for i, line in enumerate(lines) if line.strip().startswith(f"# END {name}"))
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    body = [f"{indent}  {line}".rstrip() for line in asl_text.rstrip("\n").splitlines()]
    new = [*lines[: begin + 1], f"{indent}{KEY}", *body, *lines[end:]]
    return "\n".join(new) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, verify) the template; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is in sync")
    args = parser.parse_args(argv)
    current = TEMPLATE.read_text(encoding="utf-8")
    wanted = current
    for asl in ASL_FILES:
        wanted = embedded(wanted, asl.read_text(encoding="utf-8"), asl.name)
    if args.check:
        if current != wanted:
            print(
                f"{TEMPLATE.name} is out of date; run python {Path(__file__).name}", file=sys.stderr
            )
            return 1
        return 0
    TEMPLATE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
