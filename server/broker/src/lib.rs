//! A Pusher Channels protocol 7 compatible broker.
