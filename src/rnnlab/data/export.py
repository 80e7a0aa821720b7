"""Copy a shipped data set out as a file in the format training and prediction read:

python -m rnnlab.data.export co2 co2.csv                           # forecasting series: CSV
python -m rnnlab.data.export fertility fertility.csv               # 192 countries, one CSV
python -m rnnlab.data.export JapaneseVowels test.ts --split test   # archive set: .ts file
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from rnnlab.data.sources import SOURCES, load_source
from rnnlab.data.ucr import _data_root


def export(name: str, path: str | Path, split: str = "test") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if name in SOURCES:
        load_source(name).to_csv(path, index=False)
        return path
    shipped = _data_root() / name / f"{name}_{split.upper()}.ts"
    if not shipped.is_file():
        raise SystemExit(
            f"error: {name!r} is neither a shipped series ({', '.join(SOURCES)}) nor a shipped "
            "archive data set (see rnnlab.data.ucr.shipped_names())"
        )
    shutil.copyfile(shipped, path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "name", help="shipped series (co2, fertility) or archive data set (JapaneseVowels)"
    )
    parser.add_argument("path", help="file to write")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    args = parser.parse_args(argv)
    print(export(args.name, args.path, args.split), file=sys.stdout)


if __name__ == "__main__":
    main()
