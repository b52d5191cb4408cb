//! Redis is the sequencer: every roster change is published, once, in revision order, on the shard
//! channel named like the key, by the same atomic command that made it.

use std::collections::BTreeMap;

use presence_roster::EventKind;
use presence_tests::commands::{join, leave, roster, touch};
use presence_tests::reply::{fields, int, list};
use presence_tests::{unique_channel, Listener, RedisServer, ServerOptions};
use redis::Value;

#[test]
fn each_change_is_published_with_its_revision_and_no_change_publishes_nothing() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("publish");
    let mut listener = Listener::subscribe(&server.url(), &ch);

    let joined = join(&mut con, &ch, "c1", "alice", "line\r\nbreak", &[]).unwrap();
    let events = listener.next_events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].rev, events[0].kind),
        (joined.rev, EventKind::Join)
    );
    assert_eq!(&events[0].id[..], b"alice");
    assert_eq!(events[0].data.as_deref(), Some(&b"line\r\nbreak"[..]));

    // A refresh changes nothing, so nothing is published; the next change arrives next.
    join(&mut con, &ch, "c1", "alice", "line\r\nbreak", &[]).unwrap();
    touch(&mut con, &ch, &["c1"]).unwrap();
    leave(&mut con, &ch, "nobody").unwrap();
    listener.assert_nothing_published(&mut con, &ch);

    join(&mut con, &ch, "c2", "alice", "new", &[]).unwrap();
    let update = listener.next_events();
    assert_eq!(
        (update[0].kind, update[0].rev),
        (EventKind::Update, joined.rev + 1)
    );
    leave(&mut con, &ch, "c1").unwrap();
    let left = leave(&mut con, &ch, "c2").unwrap();
    let events = listener.next_events();
    assert_eq!(
        (events[0].kind, events[0].rev),
        (EventKind::Leave, left.rev)
    );
}

#[test]
fn expiries_found_by_any_command_are_published_before_its_own_change() {
    let server = RedisServer::start_with(ServerOptions {
        server_args: vec!["--enable-debug-command".into(), "yes".into()],
        ..Default::default()
    });
    let mut con = server.connect();
    let ch = unique_channel("expire-publish");
    let mut listener = Listener::subscribe(&server.url(), &ch);
    // DEBUG SLEEP inside one MULTI lets the deadline pass with no chance for the module's expiry timer
    // to get there first, so it is the second join that finds the expired connection.
    let (ghost, _, joined): (Value, Value, Value) = redis::pipe()
        .atomic()
        .cmd("PRESENCE.JOIN")
        .arg(&ch)
        .arg(&["gone", "ghost", "", "TTL", "1"])
        .cmd("DEBUG")
        .arg(&["SLEEP", "0.01"])
        .cmd("PRESENCE.JOIN")
        .arg(&ch)
        .arg(&["here", "host", ""])
        .query(&mut con)
        .unwrap();
    let ghost_rev = int(&fields(ghost)["rev"]);
    let joined = fields(joined);
    assert_eq!(list(&joined["expired"]), vec![b"ghost".to_vec()]);
    let rev = int(&joined["rev"]);
    assert_eq!(listener.next_events()[0].rev, ghost_rev);
    let kinds: Vec<_> = listener
        .next_events()
        .iter()
        .map(|e| (e.kind, e.id.to_vec(), e.rev))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Expire, b"ghost".to_vec(), rev - 1),
            (EventKind::Join, b"host".to_vec(), rev)
        ],
        "one message: the expiry, then the join"
    );
}

/// Several clients change one channel at once; a listener rebuilds the roster from the events alone and
/// must end with exactly what `PRESENCE.ROSTER` says, having seen every revision once, in order.
#[test]
fn a_listener_sees_every_change_once_in_order_under_concurrent_clients() {
    let server = RedisServer::start();
    let ch = unique_channel("concurrent");
    let mut con = server.connect();
    // An anchor member keeps the channel alive, so revisions stay consecutive (no re-seeding).
    let anchor = join(&mut con, &ch, "anchor", "anchor", "", &[]).unwrap();
    let mut listener = Listener::subscribe(&server.url(), &ch);

    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let url = server.url();
            let ch = ch.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let mut changes = 0;
                for round in 0..150u32 {
                    // Ids shared between workers, several connections per id.
                    let id = format!("user{}", (round * 7 + worker) % 10);
                    let client = format!("w{worker}-c{}", round % 5);
                    let data = format!("{{\"round\":{round}}}");
                    if round % 3 == 2 {
                        leave(&mut con, &ch, &client).unwrap();
                    } else {
                        join(&mut con, &ch, &client, &id, &data, &[]).unwrap();
                    }
                    changes += 1;
                }
                changes
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let (final_rev, truth) = roster(&mut con, &ch).unwrap();

    let mut rebuilt: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    rebuilt.insert(b"anchor".to_vec(), b"".to_vec());
    let mut rev = anchor.rev;
    while rev < final_rev {
        for event in listener.next_events() {
            assert_eq!(
                event.rev,
                rev + 1,
                "revisions arrive in order without gaps or repeats"
            );
            rev = event.rev;
            match event.kind {
                EventKind::Join => {
                    assert!(
                        rebuilt
                            .insert(event.id.to_vec(), event.data.unwrap().to_vec())
                            .is_none(),
                        "join of a present member"
                    )
                }
                EventKind::Update => {
                    assert!(
                        rebuilt
                            .insert(event.id.to_vec(), event.data.unwrap().to_vec())
                            .is_some(),
                        "update of an absent member"
                    )
                }
                EventKind::Leave | EventKind::Expire => {
                    assert!(
                        rebuilt.remove(&event.id[..]).is_some(),
                        "leave of an absent member"
                    )
                }
            }
        }
    }
    assert_eq!(rebuilt, truth);
    listener.assert_nothing_published(&mut con, &ch);
}
