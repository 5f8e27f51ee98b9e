"""Liveness, error pages and the database-down page."""

from __future__ import annotations


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "up"}


def test_unknown_page_is_a_clear_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert b"Page not found" in response.data
    assert b'href="/"' in response.data  # a way home
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_database_down_gives_503(app_config, tmp_path):
    from newsletter import create_app

    app_config["DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    application = create_app(app_config)
    response = application.test_client().get("/healthz")
    assert response.status_code == 503
