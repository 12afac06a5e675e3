"""The small shared layer every package may import (and that imports none of them): time zones
and UTC helpers, atomic file writes, file locks, logging set-up and secret redaction."""
