//! The frames a member reads, parsed without building JSON values: a roster object's keys become
//! [`Pid`]s (the storm's `user-<i>`, churn's `churn-<j>`, anything else foreign) and its values are
//! skipped, so 10,000 members reading rosters of 10,000 stay cheap for the load generator.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A presence id as this benchmark names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pid {
    Storm(u32),
    Churn(u32),
    Foreign,
}

fn parse_pid(s: &str) -> Pid {
    let num = |n: &str, f: fn(u32) -> Pid| n.parse().map_or(Pid::Foreign, f);
    if let Some(n) = s.strip_prefix("user-") {
        num(n, Pid::Storm)
    } else if let Some(n) = s.strip_prefix("churn-") {
        num(n, Pid::Churn)
    } else {
        Pid::Foreign
    }
}

/// The ids (keys) of a roster object; the values are skipped unparsed.
pub struct Ids(pub Vec<Pid>);

struct Key(Pid);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a presence id")
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key(parse_pid(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ids;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of presence ids")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ids, A::Error> {
                let mut ids = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(Key(pid)) = map.next_key()? {
                    map.next_value::<IgnoredAny>()?;
                    ids.push(pid);
                }
                Ok(Ids(ids))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize, Default)]
pub struct Diff {
    pub subscribe: Option<Ids>,
    pub unsubscribe: Option<Ids>,
    pub count: Option<u64>,
}

#[derive(Deserialize)]
pub struct PresenceExt {
    pub subscribe: Option<Ids>,
    pub count: Option<u64>,
}

#[derive(Deserialize)]
pub struct Ext {
    pub presence: Option<PresenceExt>,
}

#[derive(Deserialize)]
pub struct Msg<'a> {
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    pub successful: Option<bool>,
    pub error: Option<String>,
    pub data: Option<Diff>,
    pub ext: Option<Ext>,
}
