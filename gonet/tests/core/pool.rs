//! The session pool: lookup, limit, broadcast and groups.
