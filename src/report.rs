//! Usage reports from keys.db's history (pure computation; `commands/report` prints them).
