//! The controller quorum's wire: length-prefixed JSON frames over TCP, between controllers
//! (Raft messages, one way) and from brokers to the active controller (request, response).
