"""Write the recording `make run` replays: a demo channel's albums built from real Telethon types.

    .venv/bin/python scripts/make_sample_recording.py [--out compose/local/sample_recording.jsonl]

Russian captions, small PNG photos (and a tiny video and PDFs), parts out of order and twice,
a part that arrives ten minutes late, a caption edit and a deleted part: what a live channel
sends. The logic lives in storage/telegram/sample_recording.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from storage.telegram.sample_recording import write_sample_recording


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("compose/local/sample_recording.jsonl"))
    args = parser.parse_args()
    lines = write_sample_recording(args.out)
    print(f"wrote {lines} lines to {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
