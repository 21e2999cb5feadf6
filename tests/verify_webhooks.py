#!/usr/bin/env python3
"""Verifies webhook deliveries with the `standardwebhooks` package from PyPI (the spec authors' Python
library), an implementation independent of the Rust sender's.

usage: verify_webhooks.py SECRET < deliveries.json
  deliveries.json: [{"headers": {"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": ...},
                     "body": "<exact request body>"}, ...]
prints one JSON line per delivery: {"ok": true} or {"ok": false, "error": "..."}; exits 0.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    webhook = Webhook(sys.argv[1])
    for delivery in json.load(sys.stdin):
        try:
            webhook.verify(delivery["body"].encode("utf-8"), delivery["headers"])
            print(json.dumps({"ok": True}))
        except Exception as e:  # WebhookVerificationError, or a malformed header
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
