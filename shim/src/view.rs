//! [`ChannelView`]: the roster of one channel as this process's subscribers were told it.
//!
//! The module publishes every change of a channel, in `rev` order, exactly once. The view applies that
//! stream; every local subscriber's subscribe reply is taken *from the view*, so at any moment each local
//! subscriber knows exactly the view (plus deliveries in flight). That is what lets a lost pub/sub
//! connection be repaired exactly: read the true roster, and tell everyone the difference.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use presence_roster::roster::Bytes;
use serde_json::value::RawValue;

use crate::message::{id_of, value_of};
use presence_roster::{Event, EventKind};

/// The roster as told, and the revision it is at. No I/O.
#[derive(Debug, Default)]
pub struct ChannelView {
    rev: u64,
    members: HashMap<Bytes, Bytes>,
    /// The same members as the roster's JSON writes each, `"id":value`, kept in step (sorted by id, as
    /// a JSON map would be, and keyed like one: by the id as text): a roster is these joined with commas, with no member's value parsed,
    /// escaped or serialized again, which halves the cost of a 10,000-member roster.
    entries: BTreeMap<String, String>,
    /// The roster serialized, once per change: every subscribe answered before the next change shares
    /// these bytes (a storm into a big room answers dozens at one revision). `None` after a change.
    serialized: Option<Arc<RawValue>>,
    initialized: bool,
    /// Events that arrived before the first snapshot: applied on top of it.
    early: Vec<Event>,
}

impl ChannelView {
    /// A view that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a snapshot has been taken.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// The revision the view is at.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The members as told, `(id, value)` (for the tests: the shim itself answers from the JSON copy).
    #[cfg(test)]
    pub fn members(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.members.iter()
    }

    /// How many members the view has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The roster as told, as JSON `{id: value}` (for the tests: replies share [`Self::roster_shared`]).
    #[cfg(test)]
    pub fn roster_json(&self) -> serde_json::Value {
        serde_json::from_str(joined(&self.entries).as_str()).expect("the entries join into JSON")
    }

    /// The roster as told, serialized `{id: value}`: what a subscribe reply carries. Serialized on the
    /// first call after a change and shared until the next, so a reply costs no work per member.
    /// (Serializing a map of JSON values does not fail; the error is serde_json's signature.)
    pub fn roster_shared(&mut self) -> Result<Arc<RawValue>, serde_json::Error> {
        if let Some(serialized) = &self.serialized {
            return Ok(serialized.clone());
        }
        // Each entry is serde_json's own output, so the join is valid JSON; from_string checks it
        // anyway, at a fraction of what serializing cost.
        let serialized: Arc<RawValue> = Arc::from(RawValue::from_string(joined(&self.entries))?);
        self.serialized = Some(serialized.clone());
        Ok(serialized)
    }

    /// Starts the view from a roster read at `rev` (the first join's reply), then applies the events that
    /// arrived before it. Returns those of them newer than the snapshot.
    pub fn initialize(
        &mut self,
        rev: u64,
        members: impl IntoIterator<Item = (Bytes, Bytes)>,
    ) -> Vec<Event> {
        self.rev = rev;
        self.set_members(members.into_iter().collect());
        self.initialized = true;
        let early = std::mem::take(&mut self.early);
        self.apply(early)
    }

    /// Applies events from the stream; returns the ones that were new to the view, in order, to relay.
    /// Events at or below the view's revision are already in it (from a snapshot) and are skipped.
    pub fn apply(&mut self, events: Vec<Event>) -> Vec<Event> {
        if !self.initialized {
            self.early.extend(events);
            return Vec::new();
        }
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            if event.rev <= self.rev {
                continue;
            }
            self.rev = event.rev;
            self.serialized = None;
            match (event.kind, &event.data) {
                (EventKind::Join | EventKind::Update, Some(data)) => {
                    self.entries
                        .insert(id_of(&event.id), entry_of(&event.id, data));
                    self.members.insert(event.id.clone(), data.clone());
                }
                _ => {
                    self.entries.remove(&id_of(&event.id));
                    self.members.remove(&event.id);
                }
            }
            fresh.push(event);
        }
        fresh
    }

    fn set_members(&mut self, members: HashMap<Bytes, Bytes>) {
        self.serialized = None;
        self.entries = members
            .iter()
            .map(|(id, value)| (id_of(id), entry_of(id, value)))
            .collect();
        self.members = members;
    }

    /// Replaces the view with the true roster read at `rev` after a gap in the stream, and returns the
    /// difference as events: leaves for members gone, joins for members new, updates for members changed. The second value
    /// is true when the revision went backwards (Redis lost data).
    ///
    /// Each correction gets its own revision, newer than anything the subscribers were told, so a client
    /// that drops diffs it already has keeps them all: normally the last revisions up to `rev` (the gap
    /// held at least one event per difference, so they are all past the view's revision); after data loss,
    /// the revisions right after the view's.
    pub fn resync(
        &mut self,
        rev: u64,
        truth: impl IntoIterator<Item = (Bytes, Bytes)>,
    ) -> (Vec<Event>, bool) {
        let truth: HashMap<Bytes, Bytes> = truth.into_iter().collect();
        let mut diff = Vec::new();
        for id in self.members.keys() {
            if !truth.contains_key(id) {
                diff.push(Event {
                    rev: 0,
                    kind: EventKind::Leave,
                    id: id.clone(),
                    data: None,
                });
            }
        }
        for (id, data) in &truth {
            // A member told with other data is an update: batching relies on an event's kind to know
            // whether the id was a member before.
            let kind = match self.members.get(id) {
                Some(told) if told == data => continue,
                Some(_) => EventKind::Update,
                None => EventKind::Join,
            };
            diff.push(Event {
                rev: 0,
                kind,
                id: id.clone(),
                data: Some(data.clone()),
            });
        }
        let went_back = rev < self.rev;
        let first = if went_back || rev < self.rev + diff.len() as u64 {
            self.rev + 1
        } else {
            rev + 1 - diff.len() as u64
        };
        for (n, event) in diff.iter_mut().enumerate() {
            event.rev = first + n as u64;
        }
        self.rev = rev;
        self.set_members(truth);
        self.initialized = true;
        self.early.clear();
        (diff, went_back)
    }
}

/// One member as the roster's JSON writes it: `"id":value`, exactly as serializing the map did.
fn entry_of(id: &[u8], value: &[u8]) -> String {
    // A string and a JSON value always serialize; "null" only keeps this total.
    let id = serde_json::to_string(&id_of(id)).unwrap_or_else(|_| "null".into());
    let value = serde_json::to_string(&value_of(value)).unwrap_or_else(|_| "null".into());
    let mut entry = String::with_capacity(id.len() + 1 + value.len());
    entry.push_str(&id);
    entry.push(':');
    entry.push_str(&value);
    entry
}

/// `{entry,entry,...}`, in one allocation.
fn joined(entries: &BTreeMap<String, String>) -> String {
    let length = 2 + entries.values().map(|e| e.len() + 1).sum::<usize>();
    let mut roster = String::with_capacity(length);
    roster.push('{');
    for (n, entry) in entries.values().enumerate() {
        if n > 0 {
            roster.push(',');
        }
        roster.push_str(entry);
    }
    roster.push('}');
    roster
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.as_bytes())
    }

    fn event(rev: u64, kind: EventKind, id: &str, data: Option<&str>) -> Event {
        Event {
            rev,
            kind,
            id: b(id),
            data: data.map(b),
        }
    }

    fn members(view: &ChannelView) -> Vec<(String, String)> {
        let mut m: Vec<_> = view
            .members()
            .map(|(i, d)| {
                (
                    String::from_utf8_lossy(i).into(),
                    String::from_utf8_lossy(d).into(),
                )
            })
            .collect();
        m.sort();
        m
    }

    #[test]
    fn events_before_the_snapshot_are_kept_and_applied_on_top_of_it() {
        let mut view = ChannelView::new();
        assert!(view
            .apply(vec![
                event(10, EventKind::Join, "a", Some("1")),
                event(12, EventKind::Join, "c", Some("3"))
            ])
            .is_empty());
        let fresh = view.initialize(11, [(b("a"), b("1")), (b("b"), b("2"))]);
        assert_eq!(
            fresh,
            vec![event(12, EventKind::Join, "c", Some("3"))],
            "rev 10 is in the snapshot"
        );
        assert_eq!(members(&view).len(), 3);
        assert_eq!(view.rev(), 12);
    }

    #[test]
    fn old_and_repeated_events_are_skipped() {
        let mut view = ChannelView::new();
        view.initialize(5, []);
        let events = vec![
            event(5, EventKind::Join, "x", Some("")),
            event(6, EventKind::Join, "a", Some("1")),
        ];
        assert_eq!(view.apply(events.clone()).len(), 1);
        assert!(view.apply(events).is_empty(), "a repeat changes nothing");
        assert_eq!(view.roster_json(), serde_json::json!({"a": 1}));
        view.apply(vec![
            event(7, EventKind::Update, "a", Some("2")),
            event(8, EventKind::Expire, "a", None),
        ]);
        assert!(members(&view).is_empty());
        assert_eq!(view.roster_json(), serde_json::json!({}));
    }

    #[test]
    fn the_roster_is_what_serializing_the_members_as_a_map_gives() {
        // Ids that need escaping or are not UTF-8, values that are JSON (spaced oddly) or not JSON at
        // all: the joined entries are byte for byte what serde_json writes for the map of them.
        let members = [
            (b("plain"), b("1")),
            (
                b("quote\"back\\slash"),
                b(r#" { "b" : [1, 2] , "a":null } "#),
            ),
            (b("nul\u{0}tab\t"), b("not json")),
            (Bytes::from(&b"\xff\xfe"[..]), b(r#""text""#)),
            (b("\u{1F600}"), b("")),
        ];
        let mut view = ChannelView::new();
        view.initialize(1, members.clone());
        let expected: serde_json::Map<String, serde_json::Value> = members
            .iter()
            .map(|(id, value)| (id_of(id), value_of(value)))
            .collect();
        let expected = serde_json::to_string(&expected).unwrap();
        assert_eq!(view.roster_shared().unwrap().get(), expected);
        // And after changes through the stream.
        view.apply(vec![
            event(2, EventKind::Leave, "plain", None),
            event(3, EventKind::Join, "z\"", Some("[true]")),
        ]);
        let parsed: serde_json::Value =
            serde_json::from_str(view.roster_shared().unwrap().get()).unwrap();
        assert_eq!(parsed["z\""], serde_json::json!([true]));
        assert!(parsed.get("plain").is_none());
        assert_eq!(parsed.as_object().unwrap().len(), 5);
    }

    #[test]
    fn the_serialized_roster_is_shared_until_the_next_change() {
        let mut view = ChannelView::new();
        view.initialize(5, [(b("a"), b("1"))]);
        let first = view.roster_shared().unwrap();
        let again = view.roster_shared().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one serialization per change");
        assert_eq!(first.get(), r#"{"a":1}"#);
        view.apply(vec![event(6, EventKind::Join, "b", Some(r#"{"n":"x"}"#))]);
        let after = view.roster_shared().unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
        let parsed: serde_json::Value = serde_json::from_str(after.get()).unwrap();
        assert_eq!(parsed, view.roster_json());
        // A repeat changes nothing, so the bytes stay shared.
        view.apply(vec![event(6, EventKind::Join, "b", Some("2"))]);
        assert!(Arc::ptr_eq(&after, &view.roster_shared().unwrap()));
        // A resync that went back to an old revision does not hand out the old bytes.
        view.resync(5, [(b("c"), b("3"))]);
        assert_eq!(view.roster_shared().unwrap().get(), r#"{"c":3}"#);
    }

    #[test]
    fn resync_tells_exactly_the_difference() {
        let mut view = ChannelView::new();
        view.initialize(
            5,
            [
                (b("stays"), b("1")),
                (b("goes"), b("1")),
                (b("changes"), b("1")),
            ],
        );
        let (diff, went_back) = view.resync(
            9,
            [
                (b("stays"), b("1")),
                (b("changes"), b("2")),
                (b("new"), b("1")),
            ],
        );
        assert!(!went_back);
        let revs: Vec<u64> = diff.iter().map(|e| e.rev).collect();
        assert_eq!(
            revs,
            vec![7, 8, 9],
            "one revision each, the last ones up to the truth's"
        );
        let mut diff: Vec<_> = diff
            .iter()
            .map(|e| (e.kind, String::from_utf8_lossy(&e.id).into_owned()))
            .collect();
        diff.sort();
        assert_eq!(
            diff,
            vec![
                (EventKind::Join, "new".into()),
                (EventKind::Update, "changes".into()),
                (EventKind::Leave, "goes".into())
            ]
        );
        assert_eq!(view.rev(), 9);
        assert_eq!(
            view.roster_json(),
            serde_json::json!({"stays": 1, "changes": 2, "new": 1})
        );

        // Redis lost data: corrections come right after what was told, whatever Redis says now.
        let (diff, went_back) = view.resync(3, []);
        assert!(went_back, "a revision going backwards is reported");
        let revs: Vec<u64> = diff.iter().map(|e| e.rev).collect();
        assert_eq!(revs, vec![10, 11, 12]);
        assert_eq!(view.rev(), 3);
    }
}
