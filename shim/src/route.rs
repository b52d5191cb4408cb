//! Which Redis server holds a channel: a jump consistent hash of the channel name.
//!
//! Jump hash (Lamping and Veach, 2014) needs no ring and no state, spreads channels evenly, and when a
//! server is added to a list of n, moves only about 1/(n+1) of the channels, all onto the new server.
//! The key hash is xxh3-64 of the name, which is fixed by its specification, so every server process
//! (and every version) routes a channel to the same place.

use xxhash_rust::xxh3::xxh3_64;

/// The bucket in `0..buckets` of `key`, by jump consistent hash.
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    assert!(buckets > 0, "at least one bucket");
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// The index of the server, out of `servers`, that holds `channel`.
pub fn shard_of(channel: &str, servers: usize) -> usize {
    let servers = u32::try_from(servers).expect("fewer than 4 billion servers");
    jump_hash(xxh3_64(channel.as_bytes()), servers) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> impl Iterator<Item = String> {
        (0..10_000).map(|n| format!("/presence/room-{n}"))
    }

    #[test]
    fn spreads_evenly() {
        let mut counts = [0usize; 4];
        for channel in channels() {
            counts[shard_of(&channel, 4)] += 1;
        }
        for count in counts {
            assert!((2_200..2_800).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_server_moves_few_channels_and_only_to_it() {
        let mut moved = 0;
        for channel in channels() {
            let (before, after) = (shard_of(&channel, 3), shard_of(&channel, 4));
            if before != after {
                assert_eq!(after, 3, "a channel only moves to the new server");
                moved += 1;
            }
        }
        assert!(
            (2_200..2_800).contains(&moved),
            "about a quarter moves, got {moved}"
        );
    }

    #[test]
    fn routing_is_fixed_across_processes_and_versions() {
        // Pinned values: if these change, a rolling upgrade would split a channel over two servers.
        // The reference algorithm of the paper, run in Python, gives these.
        let keys = [0, 1, 2, 3, 42, 12_345_678_901_234_567];
        assert_eq!(keys.map(|k| jump_hash(k, 10)), [0, 6, 6, 8, 2, 5]);
        assert_eq!(jump_hash(u64::MAX, 1000), 313);
        let pinned: Vec<usize> = ["/presence/a", "/presence/b", "/presence/lobby"]
            .iter()
            .map(|c| shard_of(c, 5))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [usize; 3] = [1, 2, 1];
}
