//! [`Observed`]: a client's roster rebuilt from what it was told, checked at every step.

use std::collections::BTreeMap;

use super::Json;

/// A client's roster rebuilt from what it was told: its subscribe reply, then each roster message in
/// order. Every step is checked as a legacy client would need it: a join only for an id it does not
/// have (or a change of its data: subscribe is an upsert), a leave only for one it has, one id per
/// message, and `rev` strictly increasing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The members as told, id -> value.
    pub members: BTreeMap<String, Json>,
    /// The last `rev` seen.
    pub rev: f64,
    /// Every rule broken, in words; empty when all was well.
    pub violations: Vec<String>,
    /// The diffs applied, in order, as `+id` (join), `~id` (data changed), `-id` (leave).
    pub history: Vec<String>,
}

impl Observed {
    /// Starts from a subscribe reply's `ext.presence`.
    pub fn from_reply(presence: &Json) -> Self {
        let mut observed = Observed::default();
        match presence.get("subscribe") {
            Json::Obj(members) => observed.members = members.clone(),
            other => observed
                .violations
                .push(format!("reply without a subscribe object: {other}")),
        }
        match presence.get("rev").as_f64() {
            Some(rev) => observed.rev = rev,
            None => observed.violations.push("reply without rev".into()),
        }
        observed
    }

    /// Applies one roster message (`{"data": .., "rev": .., "from": ..}` as the driver reports it). A
    /// batch (several ids, or both parts) is checked id by id by the same rules, except that a batch
    /// covering several revisions may repeat a member's data (it left and came back within it); its
    /// `from` must follow the last `rev` seen, or something was missed.
    pub fn apply(&mut self, message: &Json) {
        let rev = message.get("rev").as_f64();
        let from = message.get("from").as_f64();
        if let Some(from) = from {
            if from > self.rev + 1.0 {
                self.violations.push(format!(
                    "gap: from {from} after rev {} in {message}",
                    self.rev
                ));
            }
        }
        match rev {
            Some(rev) if rev > self.rev => self.rev = rev,
            _ => self
                .violations
                .push(format!("rev {rev:?} not after {} in {message}", self.rev)),
        }
        let covers_several = matches!((from, rev), (Some(from), Some(rev)) if from < rev);
        let data = message.get("data");
        let (joins, leaves) = (data.get("subscribe"), data.get("unsubscribe"));
        let empty = BTreeMap::new();
        let (joins, leaves) = match (joins, leaves) {
            (Json::Obj(joins), Json::Obj(leaves)) => (joins, leaves),
            (Json::Obj(joins), Json::Null) => (joins, &empty),
            (Json::Null, Json::Obj(leaves)) => (&empty, leaves),
            _ => {
                self.violations
                    .push(format!("not a roster message: {message}"));
                return;
            }
        };
        if joins.is_empty() && leaves.is_empty() {
            self.violations
                .push(format!("an empty roster message: {message}"));
        }
        if !covers_several && joins.len() + leaves.len() != 1 {
            self.violations
                .push(format!("one revision, several ids: {message}"));
        }
        for (id, value) in leaves {
            if joins.contains_key(id) {
                self.violations
                    .push(format!("{id:?} both joins and leaves in {message}"));
            }
            if self.members.remove(id).is_none() {
                self.violations
                    .push(format!("leave for {id:?}, not a member: {message}"));
            }
            if *value != Json::Null {
                self.violations
                    .push(format!("leave with a value {value}: {message}"));
            }
            self.history.push(format!("-{id}"));
        }
        for (id, value) in joins {
            // Subscribe is an upsert: for a member it already has, only a change of data.
            match self.members.insert(id.clone(), value.clone()) {
                Some(old) if old == *value && !covers_several => self.violations.push(format!(
                    "join for {id:?}, already a member with that data: {message}"
                )),
                Some(_) => self.history.push(format!("~{id}")),
                None => self.history.push(format!("+{id}")),
            }
        }
    }

    /// Applies all of `messages`.
    pub fn apply_all<'a>(&mut self, messages: impl IntoIterator<Item = &'a Json>) {
        for m in messages {
            self.apply(m);
        }
    }

    /// The member ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence_server::json;

    #[test]
    fn observed_checks_each_step() {
        let mut o = Observed::from_reply(&json(r#"{"subscribe":{"a":1},"rev":3}"#));
        o.apply(&json(r#"{"data":{"subscribe":{"b":null}},"rev":4}"#));
        o.apply(&json(r#"{"data":{"unsubscribe":{"a":null}},"rev":5}"#));
        assert!(o.violations.is_empty(), "{:?}", o.violations);
        assert_eq!(o.ids(), ["b"]);
        o.apply(&json(r#"{"data":{"subscribe":{"b":null}},"rev":5}"#));
        assert_eq!(o.violations.len(), 2, "{:?}", o.violations);
    }

    #[test]
    fn batches_are_checked_id_by_id() {
        let mut o = Observed::from_reply(&json(r#"{"subscribe":{"a":1,"b":2},"rev":3}"#));
        o.apply(&json(
            r#"{"data":{"subscribe":{"c":3,"b":2},"unsubscribe":{"a":null}},"rev":7,"from":4}"#,
        ));
        assert!(o.violations.is_empty(), "{:?}", o.violations);
        assert_eq!(o.ids(), ["b", "c"]);
        o.apply(&json(
            r#"{"data":{"unsubscribe":{"x":null}},"rev":9,"from":9}"#,
        ));
        assert_eq!(
            o.violations.len(),
            2,
            "a gap and an unknown leave: {:?}",
            o.violations
        );
    }
}
