//! HTTP/1.1 on the worker's connections: accept, read a request (head and
//! body, bounded in size and time), route it, answer it. `/publish` hands
//! events to the sequencer; `/events` turns the connection into an event
//! stream that the worker owns from then on.

pub(crate) mod accept;
mod chunked;
mod connection;
mod credentials;
mod error;
mod events;
mod head;
mod publish;
mod publish_body;
mod query;
mod response;
mod router;
