//! Real packets captured from Chromium, depacketized.
