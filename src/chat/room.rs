//! [`RoomState`]: the state machine behind the module's documentation.

use crate::error::quoted;
use crate::vec_map::VecMap;

use serde::Serialize;

use super::message::{validate_client_id, validate_text};
use super::reads::{ReadSeed, Reads};
use super::typing::{Typing, TypingSettings};
use super::{ChatMessage, DeliveryStatus, StoredMessage};
use crate::protocol::Error;

/// What applying stored messages changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Applied {
    /// The messages new to this room, ascending by seq, each at most once in
    /// the room's lifetime: the `onMessage` candidates.
    pub added: Vec<ChatMessage>,
    /// Set when messages are missing: fetch `?after=` this seq (the highest
    /// contiguous one) and apply the result with
    /// [`RoomState::apply_catch_up_page`]. Left out when nothing is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up_after: Option<u64>,
    /// Users who stopped typing with this call: their message arrived, or
    /// their typing expired by `now_ms`. Each is an `onTyping` false.
    pub typing_stopped: Vec<String>,
}

/// One of my sends the backend has not stored yet.
#[derive(Clone, Debug)]
struct PendingSend {
    client_id: String,
    text: String,
    /// Local time of `begin_send`.
    sent_at: u64,
    /// `Sending` or `Failed`; `Sent` ones leave the list for the stored map.
    status: DeliveryStatus,
}

/// A send to (re-)POST: what [`RoomState::pending_sends`] lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutgoingSend {
    pub client_id: String,
    pub text: String,
}

/// Which kind of history call delivered messages: decides the cursors they
/// may move and whether their senders stop typing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Latest,
    Older,
    /// Catch-up pages, `message.created` events and send responses: messages
    /// that are news right now.
    Live,
}

/// The state of one chat room as one client sees it. See the
/// [module documentation](super).
#[derive(Clone, Debug)]
pub struct RoomState {
    room_id: String,
    my_user_id: String,
    /// The stored messages ascending by seq, each seq once: the order, and
    /// also the dedup set (no separate "seen" set that would outgrow the
    /// history). A sorted Vec rather than a map: found by binary search,
    /// appended at the end in the usual case, and smaller in wasm.
    messages: Vec<StoredMessage>,
    /// message_id -> seq of every stored message: dedup by id and `mark_read`.
    /// The same map type as the read positions, so wasm carries one copy.
    seq_by_id: VecMap<String, u64>,
    /// client_id -> seq of my stored messages: a late send response or a
    /// retry finds its message here, and a client id is never reused.
    my_seq_by_client_id: VecMap<String, u64>,
    /// My unconfirmed sends in send order. Small: only what is in flight.
    pending: Vec<PendingSend>,
    /// `(floor, contiguous)` once the latest page arrived: every seq in
    /// `floor..=contiguous` is stored. `contiguous` is the catch-up cursor,
    /// `floor` the older-page cursor. Before the latest page there is no base
    /// to measure gaps from, so none are reported.
    span: Option<(u64, u64)>,
    /// The last older (or latest) page said older messages exist.
    has_older: bool,
    typing: Typing,
    reads: Reads,
    /// The seq of every stored message in the order it was stored, and again
    /// whenever its view changes ([`RoomState::touch`]): a view that has read
    /// the first n entries re-reads only the messages after them, instead of
    /// the whole history per refresh. Stored messages never leave or move
    /// (the list only grows, by seq), so this is all a view can miss.
    view_log: Vec<u64>,
}

impl RoomState {
    /// An empty room for `my_user_id`, who sends, reads and types in it.
    pub fn new(
        room_id: impl Into<String>,
        my_user_id: impl Into<String>,
        typing: TypingSettings,
    ) -> RoomState {
        RoomState {
            room_id: room_id.into(),
            my_user_id: my_user_id.into(),
            messages: Vec::new(),
            seq_by_id: VecMap::new(),
            my_seq_by_client_id: VecMap::new(),
            pending: Vec::new(),
            span: None,
            has_older: false,
            typing: Typing::new(typing),
            reads: Reads::default(),
            view_log: Vec::new(),
        }
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    pub fn my_user_id(&self) -> &str {
        &self.my_user_id
    }

    // ---- history, live messages, catch-up --------------------------------

    /// The newest page (`GET .../messages` without a cursor). The first one
    /// sets the base that gaps are measured from; `has_more` says whether
    /// older messages exist.
    pub fn apply_latest_page(
        &mut self,
        messages: Vec<StoredMessage>,
        has_more: bool,
        now_ms: u64,
    ) -> Result<Applied, Error> {
        self.check_room(&messages)?;
        let first_page = self.span.is_none();
        if first_page {
            // The page is contiguous (seqs have no gaps), so the block starts at
            // its lowest seq; for an empty room it "starts" at 1 with nothing.
            let floor = messages.iter().map(|m| m.seq).min().unwrap_or(1);
            self.span = Some((floor, floor - 1));
            self.has_older = has_more;
        }
        Ok(self.apply(messages, Source::Latest, now_ms))
    }

    /// A page of `GET .../messages?before=<older_cursor>`; `has_more` says
    /// whether still older messages exist.
    pub fn apply_older_page(
        &mut self,
        messages: Vec<StoredMessage>,
        has_more: bool,
        now_ms: u64,
    ) -> Result<Applied, Error> {
        self.check_room(&messages)?;
        if self.span.is_some() {
            self.has_older = has_more;
        }
        Ok(self.apply(messages, Source::Older, now_ms))
    }

    /// A page of `GET .../messages?after=<catch_up_cursor>`. With `has_more`
    /// the result asks for the next page (`catch_up_after` is set).
    pub fn apply_catch_up_page(
        &mut self,
        messages: Vec<StoredMessage>,
        has_more: bool,
        now_ms: u64,
    ) -> Result<Applied, Error> {
        self.check_room(&messages)?;
        let mut applied = self.apply(messages, Source::Live, now_ms);
        if has_more {
            if let Some((_, contiguous)) = self.span {
                applied.catch_up_after = Some(contiguous);
            }
        }
        Ok(applied)
    }

    /// The data of a `message.created` event.
    pub fn apply_created(&mut self, message: StoredMessage, now_ms: u64) -> Result<Applied, Error> {
        self.apply_one_live(message, now_ms)
    }

    /// The backend's seq to fetch older messages `before`; None when there are none.
    pub fn older_cursor(&self) -> Option<u64> {
        match self.span {
            Some((floor, _)) if self.has_older => Some(floor),
            _ => None,
        }
    }

    /// Whether older messages than the loaded ones exist.
    pub fn has_older(&self) -> bool {
        self.older_cursor().is_some()
    }

    /// The highest seq up to which nothing is missing (0 in an empty room or
    /// before the latest page): the `after` of a catch-up after a reconnect.
    pub fn catch_up_cursor(&self) -> u64 {
        self.span.map_or(0, |(_, contiguous)| contiguous)
    }

    fn check_room(&self, messages: &[StoredMessage]) -> Result<(), Error> {
        // All or nothing: a page with one foreign message is refused whole
        // rather than applied in part.
        match messages.iter().find(|m| m.room_id != self.room_id) {
            Some(m) => Err(Error::InvalidMessage {
                reason: format!(
                    "message {} belongs to room {}, not {}",
                    quoted(&m.message_id),
                    quoted(&m.room_id),
                    quoted(&self.room_id)
                ),
            }),
            None => Ok(()),
        }
    }

    fn apply_one_live(&mut self, message: StoredMessage, now_ms: u64) -> Result<Applied, Error> {
        self.check_room(std::slice::from_ref(&message))?;
        Ok(self.apply(vec![message], Source::Live, now_ms))
    }

    /// Stores the new messages among `messages` (duplicates by seq or
    /// message_id are dropped), retires the pending sends they confirm, moves
    /// the cursors and reports what changed.
    fn apply(&mut self, messages: Vec<StoredMessage>, source: Source, now_ms: u64) -> Applied {
        let mut added = Vec::new();
        let mut typing_stopped = Vec::new();
        for message in messages {
            let Err(at) = self.position(message.seq) else {
                continue;
            };
            if self.seq_by_id.contains_key(&message.message_id) {
                continue;
            }
            if message.user_id == self.my_user_id {
                // My message, stored: it replaces its pending send whether the
                // send response or the event got here first.
                self.pending.retain(|p| p.client_id != message.client_id);
                self.my_seq_by_client_id
                    .insert(message.client_id.clone(), message.seq);
            } else if source == Source::Live && self.typing.clear(&message.user_id) {
                typing_stopped.push(message.user_id.clone());
            }
            self.seq_by_id
                .insert(message.message_id.clone(), message.seq);
            // Kept ascending by seq as it grows: a page usually arrives in
            // order, so this appends, and it spares wasm a generic sort.
            let slot = added.partition_point(|m: &ChatMessage| m.seq < Some(message.seq));
            added.insert(slot, ChatMessage::from(&message));
            self.view_log.push(message.seq);
            self.messages.insert(at, message);
        }
        typing_stopped.extend(self.typing.expire(now_ms));

        let catch_up_after = self.extend_span();
        Applied {
            added,
            catch_up_after,
            typing_stopped,
        }
    }

    /// Grows the contiguous block over newly stored neighbours (amortised
    /// O(1) per message: each seq is stepped over once) and returns the
    /// catch-up cursor when a stored message lies beyond a hole.
    fn extend_span(&mut self) -> Option<u64> {
        let (mut floor, mut contiguous) = self.span?;
        while self.position(contiguous + 1).is_ok() {
            contiguous += 1;
        }
        while floor > 1 && self.position(floor - 1).is_ok() {
            floor -= 1;
        }
        self.span = Some((floor, contiguous));
        let newest = self.messages.last().map_or(0, |m| m.seq);
        (newest > contiguous).then_some(contiguous)
    }

    // ---- sending ----------------------------------------------------------

    /// Starts a send: checks the text as the backend would and shows the
    /// message at once, 'sending'. The caller POSTs it with this `client_id`.
    pub fn begin_send(
        &mut self,
        client_id: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<ChatMessage, Error> {
        validate_text(text)?;
        validate_client_id(client_id)?;
        if self.pending.iter().any(|p| p.client_id == client_id)
            || self.my_seq_by_client_id.contains_key(client_id)
        {
            // The backend is idempotent per client id: reusing one would
            // silently return the earlier message instead of sending this one.
            return Err(Error::InvalidClientId {
                client_id: client_id.to_owned(),
                reason: "the client id is already used in this room".into(),
            });
        }
        let pending = PendingSend {
            client_id: client_id.to_owned(),
            text: text.to_owned(),
            sent_at: now_ms,
            status: DeliveryStatus::Sending,
        };
        let message = self.pending_message(&pending);
        self.pending.push(pending);
        Ok(message)
    }

    /// The POST answered with the stored message. It is `added` unless the
    /// `message.created` event already brought it.
    pub fn send_succeeded(
        &mut self,
        client_id: &str,
        stored: StoredMessage,
        now_ms: u64,
    ) -> Result<Applied, Error> {
        if stored.client_id != client_id {
            return Err(Error::InvalidMessage {
                reason: format!(
                    "the send response is for client id {}, not {}",
                    quoted(&stored.client_id),
                    quoted(client_id)
                ),
            });
        }
        self.check_room(std::slice::from_ref(&stored))?;
        // The response answers this very send, so it retires the pending one
        // even if the sender id differs from `my_user_id` (a misconfigured
        // user id must not leave a message 'sending' forever).
        self.pending.retain(|p| p.client_id != client_id);
        Ok(self.apply(vec![stored], Source::Live, now_ms))
    }

    /// The backend refused the send (a 4xx): 'failed'. A send that is
    /// already stored stays 'sent'. True when the status changed.
    pub fn send_failed(&mut self, client_id: &str) -> bool {
        match self.pending.iter_mut().find(|p| p.client_id == client_id) {
            Some(p) if p.status == DeliveryStatus::Sending => {
                p.status = DeliveryStatus::Failed;
                true
            }
            _ => false,
        }
    }

    /// Makes a failed send 'sending' again and returns its text to POST (with
    /// the same client id). Anything but a failed send is `unknown_client_id`:
    /// a 'sending' one is already on its way, a 'sent' one is done.
    pub fn retry(&mut self, client_id: &str) -> Result<String, Error> {
        match self
            .pending
            .iter_mut()
            .find(|p| p.client_id == client_id && p.status == DeliveryStatus::Failed)
        {
            Some(p) => {
                p.status = DeliveryStatus::Sending;
                Ok(p.text.clone())
            }
            None => Err(Error::UnknownClientId {
                client_id: client_id.to_owned(),
            }),
        }
    }

    /// The 'sending' sends, oldest first: what to POST again after a reconnect.
    pub fn pending_sends(&self) -> Vec<OutgoingSend> {
        self.pending
            .iter()
            .filter(|p| p.status == DeliveryStatus::Sending)
            .map(|p| OutgoingSend {
                client_id: p.client_id.clone(),
                text: p.text.clone(),
            })
            .collect()
    }

    /// My message with this client id, pending or stored.
    pub fn message_by_client_id(&self, client_id: &str) -> Option<ChatMessage> {
        if let Some(seq) = self.my_seq_by_client_id.get(client_id) {
            return self.stored(*seq).map(ChatMessage::from);
        }
        self.pending
            .iter()
            .find(|p| p.client_id == client_id)
            .map(|p| self.pending_message(p))
    }

    fn pending_message(&self, pending: &PendingSend) -> ChatMessage {
        ChatMessage {
            message_id: None,
            room_id: self.room_id.clone(),
            seq: None,
            user_id: self.my_user_id.clone(),
            text: Some(pending.text.clone()),
            ciphertext: None,
            sent_at: pending.sent_at,
            client_id: pending.client_id.clone(),
            status: pending.status,
        }
    }

    // ---- typing -----------------------------------------------------------

    /// I typed: true when `is_typing: true` should be sent now (at most once
    /// per throttle interval).
    pub fn typing_input(&mut self, now_ms: u64) -> bool {
        self.typing.input(now_ms)
    }

    /// I stopped typing or sent a message: true when `is_typing: false`
    /// should be sent (once, and only after a true).
    pub fn typing_stop(&mut self) -> bool {
        self.typing.stop()
    }

    /// Another user's typing signal; true when their state changed. My own
    /// user id is ignored (my other tabs' signals are not "someone typing").
    pub fn typing_received(&mut self, user_id: &str, is_typing: bool, now_ms: u64) -> bool {
        if user_id == self.my_user_id || user_id.is_empty() {
            return false;
        }
        self.typing.received(user_id, is_typing, now_ms)
    }

    /// Ends the typing of everyone whose timeout passed; returns their ids.
    pub fn expire_typing(&mut self, now_ms: u64) -> Vec<String> {
        self.typing.expire(now_ms)
    }

    /// When the next typing expires: when to call [`expire_typing`](Self::expire_typing).
    pub fn next_typing_deadline(&self) -> Option<u64> {
        self.typing.next_deadline()
    }

    /// Who is typing, in the order they started.
    pub fn typing_users(&self) -> Vec<String> {
        self.typing_ids().into_iter().map(str::to_owned).collect()
    }

    /// [`typing_users`](Self::typing_users) without copying the ids.
    pub(crate) fn typing_ids(&self) -> Vec<&str> {
        self.typing.ids()
    }

    // ---- reads ------------------------------------------------------------

    /// Seeds my read state from the Room object (`last_read_seq`,
    /// `unread_count`, `latest_seq`). My position only moves forward.
    pub fn set_read_state(&mut self, my_last_read_seq: u64, unread_count: u64, latest_seq: u64) {
        self.reads.seed = Some(ReadSeed {
            last_read_seq: my_last_read_seq,
            unread_count,
            latest_seq,
        });
        self.reads.advance(&self.my_user_id, my_last_read_seq);
    }

    /// I read up to `message_id`: my position moves there at once when that
    /// is forward. Returns the seq to POST to `/read`, or None when nothing
    /// moved (an older message, or one this room does not have).
    pub fn mark_read(&mut self, message_id: &str) -> Option<u64> {
        let seq = *self.seq_by_id.get(message_id)?;
        self.reads.advance(&self.my_user_id, seq).then_some(seq)
    }

    /// A `receipt.updated` (or a member's `last_read_seq` when the room
    /// loads): true when that position moved forward. A receipt for me
    /// (from another tab) also moves my unread count.
    pub fn receipt_received(&mut self, user_id: &str, seq: u64) -> bool {
        if user_id.is_empty() {
            return false;
        }
        self.reads.advance(user_id, seq)
    }

    /// Each known member's read position.
    pub fn read_positions(&self) -> &VecMap<String, u64> {
        &self.reads.positions
    }

    /// My read position.
    pub fn my_last_read_seq(&self) -> u64 {
        self.reads.position(&self.my_user_id)
    }

    /// Messages after my read position that others sent: the loaded ones,
    /// plus (from the Room object's count) unread ones older than the loaded
    /// history while my position is still below it.
    pub fn unread_count(&self) -> u64 {
        let me = &self.my_user_id;
        let last_read = self.my_last_read_seq();
        let not_mine_after = |after: u64, up_to: u64| {
            let start = self.messages.partition_point(|m| m.seq <= after);
            self.messages[start..]
                .iter()
                .take_while(|m| m.seq <= up_to)
                .filter(|m| &m.user_id != me)
                .count() as u64
        };
        let loaded = not_mine_after(last_read, u64::MAX);
        let Some(seed) = self.reads.seed else {
            return loaded;
        };
        // The seed's unread messages that are not loaded lie below the loaded
        // history; once my position reaches that history they are all read.
        let lowest_loaded = self.messages.first().map(|m| m.seq);
        let below_history = lowest_loaded.is_none_or(|lowest| last_read.saturating_add(1) < lowest);
        if last_read >= seed.latest_seq || !below_history {
            return loaded;
        }
        let seeded_loaded = not_mine_after(seed.last_read_seq, seed.latest_seq);
        loaded + seed.unread_count.saturating_sub(seeded_loaded)
    }

    // ---- view -------------------------------------------------------------

    /// Stored messages ascending by seq, then my pending sends ('sending' or
    /// 'failed') in send order.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.messages
            .iter()
            .map(ChatMessage::from)
            .chain(self.pending.iter().map(|p| self.pending_message(p)))
            .collect()
    }

    /// The stored messages ascending by seq (what [`messages`](Self::messages)
    /// lists before the pending sends).
    pub fn stored_messages(&self) -> impl Iterator<Item = &StoredMessage> {
        self.messages.iter()
    }

    /// My pending sends as [`messages`](Self::messages) lists them, in send order.
    pub fn pending_messages(&self) -> impl Iterator<Item = ChatMessage> + '_ {
        self.pending.iter().map(|p| self.pending_message(p))
    }

    /// See the `view_log` field: seqs in the order they were stored or touched.
    pub fn view_log(&self) -> &[u64] {
        &self.view_log
    }

    /// Logs that the view of the stored message `message_id` changed (its
    /// opened text, in an encrypted room).
    pub fn touch(&mut self, message_id: &str) {
        if let Some(seq) = self.seq_by_id.get(message_id) {
            self.view_log.push(*seq);
        }
    }

    /// How many messages [`messages`](Self::messages) lists.
    pub fn message_count(&self) -> usize {
        self.messages.len() + self.pending.len()
    }

    /// The stored message with this id.
    pub fn message(&self, message_id: &str) -> Option<&StoredMessage> {
        self.seq_by_id
            .get(message_id)
            .and_then(|seq| self.stored(*seq))
    }

    /// The stored message with this seq.
    pub fn stored_message(&self, seq: u64) -> Option<&StoredMessage> {
        self.stored(seq)
    }

    /// The stored messages after `seq`, ascending.
    pub fn stored_after(&self, seq: u64) -> impl Iterator<Item = &StoredMessage> {
        let start = self.messages.partition_point(|m| m.seq <= seq);
        self.messages[start..].iter()
    }

    /// The highest stored seq (0 when none).
    pub fn newest_seq(&self) -> u64 {
        self.messages.last().map_or(0, |m| m.seq)
    }

    /// Where `seq` is in `messages` (Ok) or would go (Err).
    fn position(&self, seq: u64) -> Result<usize, usize> {
        self.messages.binary_search_by_key(&seq, |m| m.seq)
    }

    fn stored(&self, seq: u64) -> Option<&StoredMessage> {
        self.position(seq).ok().map(|at| &self.messages[at])
    }
}
