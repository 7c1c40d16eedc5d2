//! Session handles, lifecycle hooks and close reasons, server pushes and slow peers.
