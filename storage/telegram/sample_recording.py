"""The sample recording of `make run` (scripts/make_sample_recording.py writes it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.telegram.recording import RecordingWriter
from storage.telegram.samples import (
    document_message,
    media_bytes,
    photo_message,
    png_bytes,
    text_message,
    video_message,
)

DEMO_CHANNEL = -1001700000001
T0 = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)


def write_sample_recording(path: Path) -> int:
    """Write the demo channel's recording to `path`; returns the number of lines."""
    c = DEMO_CHANNEL
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        w = RecordingWriter(fh)

        def photo(mid: int, gid: int | None, at: timedelta, text: str = "") -> None:
            data = png_bytes(f"demo:{mid}")
            w.message(
                c,
                photo_message(c, mid, date=T0 + at, grouped_id=gid, text=text, size=len(data)),
                data,
            )

        # 1: three photos of a cat, parts arriving out of order and one twice
        photo(101, 9001, timedelta(seconds=1))
        photo(100, 9001, timedelta(seconds=0), "Кот на диване: утро, день и вечер")
        photo(102, 9001, timedelta(seconds=1))
        photo(101, 9001, timedelta(seconds=1))
        w.message(
            c, text_message(c, 103, date=T0 + timedelta(minutes=1), text="Доброе утро!"), None
        )
        # 2: two photos and a short video
        photo(110, 9002, timedelta(minutes=5), "Прогулка по набережной")
        photo(111, 9002, timedelta(minutes=5))
        clip = media_bytes("demo:112", 12_000)
        w.message(
            c,
            video_message(c, 112, date=T0 + timedelta(minutes=5), grouped_id=9002, size=len(clip)),
            clip,
        )
        # 3: four photos with the caption on the second part
        photo(120, 9003, timedelta(minutes=12))
        photo(121, 9003, timedelta(minutes=12), "Рецепт борща: шаг за шагом")
        photo(122, 9003, timedelta(minutes=12))
        photo(123, 9003, timedelta(minutes=12))
        # 4: two documents
        for mid, name in ((130, "otchet_q1.pdf"), (131, "otchet_q2.pdf")):
            pdf = b"%PDF-1.4\n% sample " + name.encode() + b"\n%%EOF\n"
            w.message(
                c,
                document_message(
                    c,
                    mid,
                    date=T0 + timedelta(minutes=20),
                    grouped_id=9004,
                    size=len(pdf),
                    file_name=name,
                    text="Отчёт за квартал" if mid == 130 else "",
                ),
                pdf,
            )
        # 5: a sunset whose third photo arrives ten minutes later
        photo(140, 9005, timedelta(minutes=30), "Закат над заливом")
        photo(141, 9005, timedelta(minutes=30))
        w.message(c, text_message(c, 142, date=T0 + timedelta(minutes=35), text="Скоро ещё"), None)
        photo(143, 9005, timedelta(minutes=40))
        # the cat album's caption is edited, and the recipe loses its last photo
        edited = png_bytes("demo:100")
        w.message(
            c,
            photo_message(
                c,
                100,
                date=T0,
                grouped_id=9001,
                text="Кот на диване: утро, день и вечер (обновлено)",
                size=len(edited),
                edit_date=T0 + timedelta(minutes=50),
            ),
            edited,
        )
        w.message(
            c, text_message(c, 150, date=T0 + timedelta(hours=1), text="Всем хорошего дня"), None
        )
        w.deletion(c, [123])
        return w.lines
