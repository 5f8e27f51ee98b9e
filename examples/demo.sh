#!/bin/sh
# The main job on the embedded default: SQLite under instance/, the outbox backend
# (each message becomes an .eml file under instance/outbox/), the example list and issue.
# Safe to run again: every step is idempotent, and no reader gets an issue twice (a second
# run exits 0 too: tests/test_demo.py runs it twice in a fresh copy of the checkout).
set -eu
cd "$(dirname "$0")/.."
export NEWSLETTER_ENV="${NEWSLETTER_ENV:-development}"
# NEWSLETTER_BIN names another installation (CI runs the demo from an installed wheel).
nl="${NEWSLETTER_BIN:-.venv/bin/newsletter}"

$nl db upgrade
if ! $nl lists | grep -q '^o11y-news'; then
  $nl lists create o11y-news --name "o11y news" \
    --from-address news@example.com --reply-to editors@example.com \
    --postal-address "o11y news, Rosenthaler Straße 40, 10178 Berlin, Germany" \
    --description "Observability news, every Monday."
fi
$nl subscribers import examples/subscribers.csv --list o11y-news --consented
$nl issue check examples/issue.yaml
# The example issue goes out once: a second run finds it sent and says so (send would
# refuse it, rightly, with exit status 1). An interrupted send is resumed.
if $nl status | grep -q "	unlocking-the-kernel	o11y-news	sent	"; then
  echo "The example issue was sent already (each reader gets it once): nothing more to send."
else
  $nl send examples/issue.yaml --list o11y-news --yes
fi
$nl status
echo
echo "The messages are in instance/outbox/ ($(ls instance/outbox | wc -l) files)."
echo "See them in a browser: NEWSLETTER_ENV=development $nl serve, then open /outbox"
