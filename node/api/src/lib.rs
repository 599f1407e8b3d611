//! Bastion's public API (issue 17): REST and WebSocket over the finalized chain.
