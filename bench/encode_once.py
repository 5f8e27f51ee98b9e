"""Per-reader message cost: bodies encoded once per issue vs encoded for every reader.

    .venv/bin/python bench/encode_once.py [--messages 500] [--rounds 2]

IssueRenderer.message (quoted-printable bodies built once, wire.EncodedBody) against
render_for_reader + MessageTemplate.fill with text bodies (encoded per reader), the
example issue, in one process, alternating.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import benchsetup as bs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from newsletter.composer import render_for_reader

    url = bs.fresh_sqlite(tempfile.mkdtemp())
    bs.add_readers_sqlite(url, 2)
    renderer = bs.example_renderer(url)
    renderer.message(email="a@example.com", name="A", subscription_id=1, delivery_id=1)
    template = renderer._templates[""]
    unsubscribe = f"{bs.BASE_URL}/u/abc"
    for _ in range(args.rounds):
        started = time.perf_counter()
        for i in range(args.messages):
            message = renderer.message(
                email=f"r{i}@example.com", name=f"Reader {i}", subscription_id=i, delivery_id=i
            )
        once = (time.perf_counter() - started) / args.messages
        started = time.perf_counter()
        for i in range(args.messages):
            html, text = render_for_reader(
                renderer.html,
                renderer.text,
                unsubscribe_url=unsubscribe,
                web_url=renderer.web_url,
                name=f"Reader {i}",
            )
            template.fill(
                to_address=f"r{i}@example.com",
                to_name=f"Reader {i}",
                unsubscribe_url=unsubscribe,
                text=text,
                html=html,
                tags={},
            )
        every = (time.perf_counter() - started) / args.messages
        print(
            f"per message: bodies encoded once {once * 1000:.3f} ms, encoded per reader "
            f"{every * 1000:.3f} ms, ratio {every / once:.1f}x ({len(message.as_bytes())} bytes)"
        )


if __name__ == "__main__":
    main()
