//! Who is connected and subscribed to what: connections, channels and
//! presence members.
//!
//! Pure data behind one `std::sync::Mutex`. Nothing here awaits: messages to a
//! connection go through [`Outlet::send`], a non-blocking `try_send` on its
//! bounded queue, so the lock is never held across an `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{Message, Utf8Bytes};
use domvia_realtime::json::Value;
use domvia_realtime::protocol::{Event, PresenceMember, PresenceSnapshot};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::Limits;

/// Identifies one connection inside the hub (never reused).
pub(crate) type ConnId = u64;

/// How a connection is to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Send a close frame with this code and reason; when `flush`, first write
    /// what is already queued (such as the `pusher:error` that explains it).
    Frame {
        code: u16,
        reason: &'static str,
        flush: bool,
    },
    /// Stop without a close frame: the peer closed or vanished.
    Quiet,
}

impl Closing {
    /// The close of a connection whose user the app terminated: 4009, as
    /// Pusher and sockudo close it. Queued frames go first.
    pub(crate) fn terminated() -> Closing {
        Closing::Frame {
            code: 4009,
            reason: "You got disconnected by the app",
            flush: true,
        }
    }

    /// The close of a client whose queue is full: it does not read, so
    /// nothing more is written before the close frame.
    pub(crate) fn over_capacity() -> Closing {
        Closing::Frame {
            code: 4100,
            reason: "Over capacity: the client does not read",
            flush: false,
        }
    }
}

/// A message in a connection's outbound queue. It holds its bytes of the
/// connection's byte budget until the writer has sent it.
pub(crate) struct Queued {
    pub(crate) message: Message,
    pub(crate) bytes: OwnedSemaphorePermit,
}

/// The sending side of one connection: its bounded outbound queue, the byte
/// budget of that queue, and its close signal. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outlet {
    queue: mpsc::Sender<Queued>,
    /// Free bytes of the queue's budget, one permit a byte: a count of frames
    /// alone lets a slow reader hold 256 frames of any size.
    budget: Arc<Semaphore>,
    /// The whole budget: a larger message takes all of it.
    budget_bytes: u32,
    closing: Arc<watch::Sender<Option<Closing>>>,
}

impl Outlet {
    /// An outlet whose queue may hold `budget_bytes` of text (at least 1).
    pub(crate) fn new(
        queue: mpsc::Sender<Queued>,
        closing: watch::Sender<Option<Closing>>,
        budget_bytes: usize,
    ) -> Outlet {
        let budget_bytes = u32::try_from(budget_bytes.max(1)).unwrap_or(u32::MAX);
        Outlet {
            queue,
            budget: Arc::new(Semaphore::new(budget_bytes as usize)),
            budget_bytes,
            closing: Arc::new(closing),
        }
    }

    /// The permits `text` takes: its length, or the whole budget when larger.
    fn cost(&self, text: &Utf8Bytes) -> u32 {
        u32::try_from(text.len()).map_or(self.budget_bytes, |len| len.min(self.budget_bytes))
    }

    /// Queues `text` without waiting. A full queue, in frames or in bytes,
    /// closes the connection with 4100 instead of letting memory grow.
    pub(crate) fn send(&self, text: Utf8Bytes) {
        let Ok(bytes) = Arc::clone(&self.budget).try_acquire_many_owned(self.cost(&text)) else {
            return self.close(Closing::over_capacity());
        };
        let queued = Queued {
            message: Message::Text(text),
            bytes,
        };
        match self.queue.try_send(queued) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => self.close(Closing::over_capacity()),
        }
    }

    /// Queues `text`, waiting for room (frames and bytes). For replies to the
    /// client's own frames. Returns false when the connection is gone.
    pub(crate) async fn send_reply(&self, text: Utf8Bytes) -> bool {
        // The semaphore is never closed; an error would only mean "gone".
        let Ok(bytes) = Arc::clone(&self.budget)
            .acquire_many_owned(self.cost(&text))
            .await
        else {
            return false;
        };
        let queued = Queued {
            message: Message::Text(text),
            bytes,
        };
        self.queue.send(queued).await.is_ok()
    }

    /// Asks the connection to close; the first request wins.
    pub(crate) fn close(&self, closing: Closing) {
        self.closing.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(closing);
            true
        });
    }
}

/// Why a subscription was refused, as `pusher:subscription_error` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) error_type: &'static str,
    pub(crate) message: String,
}

/// Why registering a new connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unwelcome {
    /// `max_connections` are open.
    OverCapacity,
    /// The broker is shutting down.
    ShuttingDown,
}

/// Why a client event was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotRelayed {
    /// The sender is not subscribed to the channel.
    NotSubscribed,
}

/// What the REST API reports about one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelStats {
    pub(crate) name: String,
    pub(crate) subscription_count: usize,
    /// Distinct presence members (0 for other channels).
    pub(crate) user_count: usize,
}

struct Connection {
    socket_id: String,
    outlet: Outlet,
    /// Subscribed channels, with the presence user id for presence channels.
    subscriptions: HashMap<String, Option<String>>,
    /// The user this connection signed in as (`pusher:signin`), if any: the
    /// REST API terminates a user's connections by this.
    signed_in_as: Option<String>,
}

struct Member {
    user_info: Option<Value>,
    /// Connections of this user subscribed to the channel.
    connections: usize,
}

#[derive(Default)]
struct Channel {
    subscribers: HashSet<ConnId>,
    /// Presence members by user id (empty for other channels).
    members: BTreeMap<String, Member>,
}

impl Channel {
    fn snapshot(&self) -> PresenceSnapshot {
        PresenceSnapshot {
            ids: self.members.keys().cloned().collect(),
            hash: self
                .members
                .iter()
                .map(|(id, member)| (id.clone(), member.user_info.clone().unwrap_or(Value::Null)))
                .collect(),
            count: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
        }
    }
}

#[derive(Default)]
struct State {
    next_id: ConnId,
    shutting_down: bool,
    connections: HashMap<ConnId, Connection>,
    by_socket_id: HashMap<String, ConnId>,
    channels: HashMap<String, Channel>,
}

/// Sends `text` to every subscriber of `channel` but `except`.
fn broadcast(
    connections: &HashMap<ConnId, Connection>,
    channel: &Channel,
    text: &Utf8Bytes,
    except: Option<ConnId>,
) -> usize {
    let mut sent = 0;
    for id in &channel.subscribers {
        if Some(*id) == except {
            continue;
        }
        if let Some(connection) = connections.get(id) {
            connection.outlet.send(text.clone());
            sent += 1;
        }
    }
    sent
}

fn encode(event: &Event) -> Utf8Bytes {
    Utf8Bytes::from(event.to_frame().encode())
}

impl State {
    /// Removes connection `id` from `channel_name`, announcing the member's
    /// departure when it was the user's last connection there.
    fn leave(&mut self, id: ConnId, channel_name: &str, user_id: Option<String>) {
        let Some(channel) = self.channels.get_mut(channel_name) else {
            return;
        };
        channel.subscribers.remove(&id);
        if let Some(user_id) = user_id {
            let last = match channel.members.get_mut(&user_id) {
                Some(member) => {
                    member.connections = member.connections.saturating_sub(1);
                    member.connections == 0
                }
                None => false,
            };
            if last {
                channel.members.remove(&user_id);
                let removed = encode(&Event::MemberRemoved {
                    channel: channel_name.to_owned(),
                    user_id,
                });
                broadcast(&self.connections, channel, &removed, Some(id));
            }
        }
        if channel.subscribers.is_empty() {
            self.channels.remove(channel_name);
        }
    }
}

/// A random socket id, `digits.digits`.
fn random_socket_id() -> Option<String> {
    let mut bytes = [0_u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    let [a0, a1, a2, a3, b0, b1, b2, b3] = bytes;
    let left = u32::from_le_bytes([a0, a1, a2, a3]);
    let right = u32::from_le_bytes([b0, b1, b2, b3]);
    Some(format!("{left}.{right}"))
}

/// All connections, channels and presence members of the broker.
pub(crate) struct Hub {
    limits: Limits,
    state: Mutex<State>,
}

impl Hub {
    pub(crate) fn new(limits: Limits) -> Hub {
        Hub {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// The state; a poisoned lock is used as it is (nothing here leaves the
    /// state half-updated in a way that matters more than refusing service).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a connection and gives it a fresh, unique socket id.
    pub(crate) fn register(&self, outlet: Outlet) -> Result<(ConnId, String), Unwelcome> {
        let mut state = self.lock();
        if state.shutting_down {
            return Err(Unwelcome::ShuttingDown);
        }
        if state.connections.len() >= self.limits.max_connections {
            return Err(Unwelcome::OverCapacity);
        }
        let id = state.next_id;
        state.next_id = id.wrapping_add(1);
        let mut socket_id = None;
        for _ in 0..8 {
            match random_socket_id() {
                Some(candidate) if !state.by_socket_id.contains_key(&candidate) => {
                    socket_id = Some(candidate);
                    break;
                }
                _ => {}
            }
        }
        // Without randomness (or after 8 collisions) the connection number is
        // still unique: `id` is never reused and random ids have no leading
        // "0.".
        let socket_id = socket_id.unwrap_or_else(|| format!("0.{id}"));
        state.by_socket_id.insert(socket_id.clone(), id);
        state.connections.insert(
            id,
            Connection {
                socket_id: socket_id.clone(),
                outlet,
                subscriptions: HashMap::new(),
                signed_in_as: None,
            },
        );
        Ok((id, socket_id))
    }

    /// Removes a connection and all its subscriptions.
    pub(crate) fn unregister(&self, id: ConnId) {
        let mut state = self.lock();
        let Some(connection) = state.connections.remove(&id) else {
            return;
        };
        state.by_socket_id.remove(&connection.socket_id);
        for (channel, user_id) in connection.subscriptions {
            state.leave(id, &channel, user_id);
        }
    }

    /// True once [`Hub::shut_down`] ran.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.lock().connections.len()
    }

    /// Connection `id` signed in as `user_id` (a later sign-in replaces it).
    pub(crate) fn signed_in(&self, id: ConnId, user_id: &str) {
        if let Some(connection) = self.lock().connections.get_mut(&id) {
            connection.signed_in_as = Some(user_id.to_owned());
        }
    }

    /// Closes every connection signed in as `user_id` with 4009, as Pusher
    /// and sockudo do for `terminate_connections`; returns how many. Only
    /// signed-in connections are the user's: a presence `user_id` is the
    /// app's claim about a channel, not about the connection.
    pub(crate) fn terminate_user(&self, user_id: &str) -> usize {
        let state = self.lock();
        let mut closed = 0;
        for connection in state.connections.values() {
            if connection.signed_in_as.as_deref() == Some(user_id) {
                connection.outlet.close(Closing::terminated());
                closed += 1;
            }
        }
        closed
    }

    /// Refuses new connections and asks every open one to close.
    pub(crate) fn shut_down(&self, closing: Closing) {
        let mut state = self.lock();
        state.shutting_down = true;
        for connection in state.connections.values() {
            connection.outlet.close(closing.clone());
        }
    }

    /// Subscribes connection `id` to a channel whose name and auth are already
    /// checked; `member` is the verified presence member for presence channels.
    ///
    /// Returns the presence members (with the new one) for presence channels.
    /// Subscribing again to a subscribed channel changes nothing and succeeds.
    /// A new presence user is announced to the other subscribers.
    pub(crate) fn subscribe(
        &self,
        id: ConnId,
        channel_name: &str,
        member: Option<PresenceMember>,
    ) -> Result<Option<PresenceSnapshot>, Refusal> {
        let mut state = self.lock();
        let State {
            connections,
            channels,
            ..
        } = &mut *state;
        let Some(connection) = connections.get_mut(&id) else {
            return Err(Refusal {
                status: 400,
                error_type: "ConnectionClosed",
                message: format!(
                    "unable to subscribe to channel {channel_name:?}; the connection is closing"
                ),
            });
        };
        if let Some(user_id) = connection.subscriptions.get(channel_name) {
            let snapshot = match (user_id, channels.get(channel_name)) {
                (Some(_), Some(channel)) => Some(channel.snapshot()),
                _ => None,
            };
            return Ok(snapshot);
        }
        if connection.subscriptions.len() >= self.limits.max_channels_per_connection {
            return Err(Refusal {
                status: 429,
                error_type: "LimitReached",
                message: format!(
                    "unable to subscribe to channel {channel_name:?}; the connection is already subscribed to {} channels, the most allowed",
                    self.limits.max_channels_per_connection
                ),
            });
        }
        if let (Some(member), Some(channel)) = (&member, channels.get(channel_name)) {
            if !channel.members.contains_key(&member.user_id)
                && channel.members.len() >= self.limits.max_presence_members
            {
                return Err(Refusal {
                    status: 403,
                    error_type: "LimitReached",
                    message: format!(
                        "unable to subscribe to channel {channel_name:?}; it already has {} members, the most allowed",
                        self.limits.max_presence_members
                    ),
                });
            }
        }
        let channel = channels.entry(channel_name.to_owned()).or_default();
        channel.subscribers.insert(id);
        let Some(member) = member else {
            connection
                .subscriptions
                .insert(channel_name.to_owned(), None);
            return Ok(None);
        };
        connection
            .subscriptions
            .insert(channel_name.to_owned(), Some(member.user_id.clone()));
        match channel.members.get_mut(&member.user_id) {
            Some(existing) => existing.connections += 1,
            None => {
                let added = encode(&Event::MemberAdded {
                    channel: channel_name.to_owned(),
                    user_id: member.user_id.clone(),
                    user_info: member.user_info.clone(),
                });
                channel.members.insert(
                    member.user_id,
                    Member {
                        user_info: member.user_info,
                        connections: 1,
                    },
                );
                broadcast(connections, channel, &added, Some(id));
            }
        }
        Ok(Some(channel.snapshot()))
    }

    /// Unsubscribes connection `id` from a channel; nothing happens when it is
    /// not subscribed.
    pub(crate) fn unsubscribe(&self, id: ConnId, channel_name: &str) {
        let mut state = self.lock();
        let user_id = match state.connections.get_mut(&id) {
            Some(connection) => match connection.subscriptions.remove(channel_name) {
                Some(user_id) => user_id,
                None => return,
            },
            None => return,
        };
        state.leave(id, channel_name, user_id);
    }

    /// Relays a client event from connection `id` to the other subscribers of
    /// `channel_name`. `encode` gets the sender's presence user id (`None` on
    /// other channels) and returns the frame to deliver.
    pub(crate) fn relay(
        &self,
        id: ConnId,
        channel_name: &str,
        encode: impl FnOnce(Option<&str>) -> String,
    ) -> Result<usize, NotRelayed> {
        let state = self.lock();
        let user_id = state
            .connections
            .get(&id)
            .and_then(|connection| connection.subscriptions.get(channel_name))
            .ok_or(NotRelayed::NotSubscribed)?;
        let Some(channel) = state.channels.get(channel_name) else {
            return Err(NotRelayed::NotSubscribed);
        };
        let text = Utf8Bytes::from(encode(user_id.as_deref()));
        Ok(broadcast(&state.connections, channel, &text, Some(id)))
    }

    /// Delivers `text` to every subscriber of `channel_name` except the
    /// connection with socket id `except_socket_id`.
    pub(crate) fn publish(
        &self,
        channel_name: &str,
        text: &Utf8Bytes,
        except_socket_id: Option<&str>,
    ) -> usize {
        let state = self.lock();
        let Some(channel) = state.channels.get(channel_name) else {
            return 0;
        };
        let except = except_socket_id.and_then(|socket_id| state.by_socket_id.get(socket_id));
        broadcast(&state.connections, channel, text, except.copied())
    }

    /// Occupied channels whose name starts with `prefix`, sorted by name.
    pub(crate) fn channels(&self, prefix: &str) -> Vec<ChannelStats> {
        let state = self.lock();
        let mut stats: Vec<ChannelStats> = state
            .channels
            .iter()
            .filter(|(name, channel)| name.starts_with(prefix) && !channel.subscribers.is_empty())
            .map(|(name, channel)| ChannelStats {
                name: name.clone(),
                subscription_count: channel.subscribers.len(),
                user_count: channel.members.len(),
            })
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// One channel; `None` when nobody is subscribed.
    pub(crate) fn channel(&self, name: &str) -> Option<ChannelStats> {
        let state = self.lock();
        let channel = state.channels.get(name)?;
        Some(ChannelStats {
            name: name.to_owned(),
            subscription_count: channel.subscribers.len(),
            user_count: channel.members.len(),
        })
    }

    /// The user ids of a presence channel's members, sorted.
    pub(crate) fn users(&self, name: &str) -> Vec<String> {
        let state = self.lock();
        state
            .channels
            .get(name)
            .map(|channel| channel.members.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domvia_realtime::protocol::{validate_socket_id, Frame};
    use serde_json::json;

    struct Peer {
        id: ConnId,
        socket_id: String,
        queue: mpsc::Receiver<Queued>,
        closing: watch::Receiver<Option<Closing>>,
    }

    impl Peer {
        fn events(&mut self) -> Vec<Frame> {
            let mut frames = Vec::new();
            while let Ok(Queued {
                message: Message::Text(text),
                ..
            }) = self.queue.try_recv()
            {
                frames.push(Frame::decode(text.as_str()).unwrap());
            }
            frames
        }
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            max_channels_per_connection: 2,
            max_presence_members: 2,
            outbound_queue_messages: 4,
            ..Limits::default()
        }
    }

    fn join(hub: &Hub) -> Result<Peer, Unwelcome> {
        let (queue_tx, queue) = mpsc::channel(4);
        let (closing_tx, closing) = watch::channel(None);
        let (id, socket_id) = hub.register(Outlet::new(queue_tx, closing_tx, 64))?;
        Ok(Peer {
            id,
            socket_id,
            queue,
            closing,
        })
    }

    fn member(user_id: &str) -> Option<PresenceMember> {
        Some(PresenceMember {
            user_id: user_id.into(),
            user_info: Some(json!({"name": user_id}).into()),
        })
    }

    #[test]
    fn socket_ids_are_valid_and_unique() {
        let hub = Hub::new(limits());
        let a = join(&hub).unwrap();
        let b = join(&hub).unwrap();
        assert_eq!(validate_socket_id(&a.socket_id), Ok(()));
        assert_eq!(validate_socket_id(&b.socket_id), Ok(()));
        assert_ne!(a.socket_id, b.socket_id);
        assert_eq!(hub.connection_count(), 2);
    }

    #[test]
    fn over_capacity_and_shutdown_refuse_connections() {
        let hub = Hub::new(limits());
        let peers: Vec<Peer> = (0..4).map(|_| join(&hub).unwrap()).collect();
        assert_eq!(join(&hub).err(), Some(Unwelcome::OverCapacity));
        hub.unregister(peers[0].id);
        assert!(join(&hub).is_ok());
        let closing = Closing::Frame {
            code: 4200,
            reason: "bye",
            flush: true,
        };
        hub.shut_down(closing.clone());
        assert_eq!(*peers[1].closing.borrow(), Some(closing));
        hub.unregister(peers[1].id);
        assert_eq!(join(&hub).err(), Some(Unwelcome::ShuttingDown));
    }

    #[test]
    fn presence_counts_users_not_connections() {
        let hub = Hub::new(limits());
        let mut watcher = join(&hub).unwrap();
        let mut first = join(&hub).unwrap();
        let mut second = join(&hub).unwrap();
        let channel = "presence-room";
        let snapshot = hub.subscribe(watcher.id, channel, member("w")).unwrap();
        assert_eq!(snapshot.unwrap().ids, ["w"]);
        let snapshot = hub.subscribe(first.id, channel, member("u")).unwrap();
        assert_eq!(snapshot.unwrap().count, 2);
        let snapshot = hub.subscribe(second.id, channel, member("u")).unwrap();
        assert_eq!(snapshot.unwrap().count, 2);
        let added = watcher.events();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].event, "pusher_internal:member_added");
        assert_eq!(first.events().len(), 0);
        assert!(second.events().is_empty());
        hub.unsubscribe(first.id, channel);
        assert!(watcher.events().is_empty());
        hub.unregister(second.id);
        let removed = watcher.events();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].event, "pusher_internal:member_removed");
        assert_eq!(hub.users(channel), ["w"]);
    }

    #[test]
    fn limits_refuse_subscriptions() {
        let hub = Hub::new(limits());
        let a = join(&hub).unwrap();
        let b = join(&hub).unwrap();
        let c = join(&hub).unwrap();
        hub.subscribe(a.id, "presence-x", member("a")).unwrap();
        hub.subscribe(b.id, "presence-x", member("b")).unwrap();
        let refusal = hub.subscribe(c.id, "presence-x", member("c")).unwrap_err();
        assert_eq!(refusal.status, 403);
        // Another connection of an existing member still fits.
        assert!(hub.subscribe(c.id, "presence-x", member("a")).is_ok());
        hub.subscribe(a.id, "one", None).unwrap();
        // Subscribing again is not a new channel.
        hub.subscribe(a.id, "one", None).unwrap();
        let refusal = hub.subscribe(a.id, "two", None).unwrap_err();
        assert_eq!(refusal.status, 429);
        assert_eq!(hub.channel("one").unwrap().subscription_count, 1);
    }

    #[test]
    fn full_queue_closes_with_4100() {
        let hub = Hub::new(limits());
        let peer = join(&hub).unwrap();
        hub.subscribe(peer.id, "news", None).unwrap();
        for _ in 0..5 {
            hub.publish("news", &Utf8Bytes::from("{}"), None);
        }
        assert_eq!(*peer.closing.borrow(), Some(Closing::over_capacity()));
    }

    #[test]
    fn a_full_byte_budget_closes_with_4100() {
        let hub = Hub::new(limits());
        // 64 bytes of budget: two 30-byte frames fit, a third does not.
        let mut peer = join(&hub).unwrap();
        hub.subscribe(peer.id, "news", None).unwrap();
        let frame = Utf8Bytes::from("x".repeat(30));
        hub.publish("news", &frame, None);
        hub.publish("news", &frame, None);
        assert_eq!(*peer.closing.borrow(), None);
        hub.publish("news", &frame, None);
        assert_eq!(*peer.closing.borrow(), Some(Closing::over_capacity()));
        // Sent frames give their bytes back.
        assert_eq!(
            peer.queue.try_recv().map(|queued| queued.message).ok(),
            Some(Message::Text(frame))
        );
    }

    #[test]
    fn publish_skips_the_excluded_socket() {
        let hub = Hub::new(limits());
        let mut a = join(&hub).unwrap();
        let mut b = join(&hub).unwrap();
        hub.subscribe(a.id, "news", None).unwrap();
        hub.subscribe(b.id, "news", None).unwrap();
        let sent = hub.publish(
            "news",
            &Utf8Bytes::from("{\"event\":\"e\"}"),
            Some(&a.socket_id),
        );
        assert_eq!(sent, 1);
        assert!(a.events().is_empty());
        assert_eq!(b.events().len(), 1);
        assert_eq!(hub.publish("nobody", &Utf8Bytes::from("{}"), None), 0);
        assert!(hub.channels("").iter().any(|c| c.name == "news"));
        hub.unregister(a.id);
        hub.unregister(b.id);
        assert!(hub.channels("").is_empty());
    }
}
