//! What to do when the connection closes, by WebSocket close code.

/// The reaction to a close code (or to a `pusher:error` carrying one).
///
/// Protocol 7 reserves the 4000-4399 range and groups it by hundreds, so a client
/// knows how to react even to a code it has never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseAction {
    /// 4000-4099: the broker refused these settings (wrong app key, app
    /// disabled, over quota, SSL only...). Reconnecting with the same settings
    /// fails the same way, so stop and report the error.
    Fail,
    /// 4100-4199, and any code outside the Pusher ranges: reconnect after a
    /// backoff delay, because the broker is over capacity or the network dropped.
    Backoff,
    /// 4200-4299: the broker asks for a new connection at once (it is
    /// restarting, or the connection went stale after a missed pong).
    ReconnectNow,
    /// 4300-4399: an error that leaves the socket open, such as 4301 (client
    /// event rate limit exceeded). Report it and keep the connection.
    KeepSocket,
}

/// The reaction to close code `code`.
///
/// Codes outside 4000-4399 are ordinary WebSocket closes (1000 normal, 1001 going
/// away, 1006 abnormal, 1011 server error...) and carry no instruction from the
/// broker. They most often mean a dropped network or a restarting server, so the
/// client reconnects, with backoff so that a broker that is down is not flooded.
pub fn close_action(code: u16) -> CloseAction {
    match code {
        4000..=4099 => CloseAction::Fail,
        4100..=4199 => CloseAction::Backoff,
        4200..=4299 => CloseAction::ReconnectNow,
        4300..=4399 => CloseAction::KeepSocket,
        _ => CloseAction::Backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_boundary() {
        let cases = [
            (0, CloseAction::Backoff),
            (1000, CloseAction::Backoff),
            (1006, CloseAction::Backoff),
            (3999, CloseAction::Backoff),
            (4000, CloseAction::Fail),
            (4001, CloseAction::Fail),
            (4099, CloseAction::Fail),
            (4100, CloseAction::Backoff),
            (4199, CloseAction::Backoff),
            (4200, CloseAction::ReconnectNow),
            (4201, CloseAction::ReconnectNow),
            (4299, CloseAction::ReconnectNow),
            (4300, CloseAction::KeepSocket),
            (4301, CloseAction::KeepSocket),
            (4399, CloseAction::KeepSocket),
            (4400, CloseAction::Backoff),
            (4999, CloseAction::Backoff),
            (u16::MAX, CloseAction::Backoff),
        ];
        for (code, action) in cases {
            assert_eq!(close_action(code), action, "code {code}");
        }
    }
}
