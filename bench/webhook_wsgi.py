"""Benchmark only: the app with its SNS certificate fetch answered from a local test file.

Production builds its gateway from configuration and fetches certificates over verified
HTTPS from Amazon; the benchmark has no network, so it swaps the fetcher after
create_app(), exactly as tests do. Never deploy this module.
"""

from __future__ import annotations

import os
from pathlib import Path

from newsletter import create_app
from newsletter.sns import CertificateStore

_PEM = Path(os.environ["BENCH_SNS_CERT_PEM"]).read_bytes()
_CERT_URL = os.environ["BENCH_SNS_CERT_URL"]


def _fetch(url: str) -> bytes:
    if url != _CERT_URL:
        raise OSError(f"no certificate at {url}")
    return _PEM


app = create_app()
app.extensions["newsletter.sns"].certificates = CertificateStore(fetch=_fetch)
