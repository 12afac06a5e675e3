"""Shared pieces of the model lab tests: the champion they install and the analyst forms."""

from __future__ import annotations

CHAMPION = "20260101T000000Z"
PASSWORD = "stockpulse-demo"  # the local profile's default analyst password


def fill_form(at, key: str, name: str, password: str, reason: str | None = None):
    at.text_input(key=f"{key}_name").input(name)
    at.text_input(key=f"{key}_password").input(password)
    if reason is not None:
        form = next(f for f in at.get("form") if f.proto.form.form_id == f"{key}_form")
        form.text_input[0].input(reason)
    return at


def submit(at, label: str):
    next(b for b in at.button if b.label == label).click()
    return at.run()
