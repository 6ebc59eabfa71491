//! The hash keys of the shard's maps whose iteration order decides something (which queue
//! member a message goes to, the order subscriptions are dropped in): random per map, as ahash
//! makes them, or drawn from a seed a simulator sets on its thread, so that one seed replays a
//! whole run (`tests/sim.rs`).
//!
//! Cold: keys are drawn when a map is made, never per lookup; the hasher is ahash's.
//! Invariant: without `set_thread_seed`, every map gets its own random keys (the keys of maps
//! over client-chosen subjects must not be predictable).

use std::cell::Cell;
use std::hash::BuildHasher;

thread_local! {
    static SEED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// From now on, maps made on this thread draw their keys from `seed` (`None`: random again).
pub fn set_thread_seed(seed: Option<u64>) {
    SEED.with(|s| s.set(seed));
}

/// A map keyed per `Seeded`.
pub type SeededMap<K, V> = ahash::AHashMap<K, V, Seeded>;

/// An empty map with fresh keys.
pub fn map<K, V>() -> SeededMap<K, V> {
    ahash::AHashMap::with_hasher(Seeded::new())
}

/// ahash's `RandomState`, with keys from the thread's seed when one is set.
#[derive(Clone)]
pub struct Seeded(ahash::RandomState);

impl Seeded {
    pub fn new() -> Seeded {
        let drawn = SEED.with(|s| {
            let seed = s.get()?;
            let next = splitmix(seed);
            s.set(Some(next));
            Some(next)
        });
        match drawn {
            Some(k) => Seeded(ahash::RandomState::with_seeds(
                k,
                splitmix(k ^ 1),
                splitmix(k ^ 2),
                splitmix(k ^ 3),
            )),
            None => Seeded(ahash::RandomState::new()),
        }
    }
}

impl Default for Seeded {
    fn default() -> Seeded {
        Seeded::new()
    }
}

impl BuildHasher for Seeded {
    type Hasher = ahash::AHasher;

    #[inline]
    fn build_hasher(&self) -> ahash::AHasher {
        self.0.build_hasher()
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(seed: Option<u64>) -> Vec<u32> {
        set_thread_seed(seed);
        let mut m = map();
        for i in 0..64u32 {
            m.insert(i, ());
        }
        set_thread_seed(None);
        m.keys().copied().collect()
    }

    #[test]
    fn a_seed_fixes_the_iteration_order() {
        assert_eq!(order(Some(7)), order(Some(7)));
        assert_ne!(
            order(Some(7)),
            order(Some(8)),
            "another seed, another order"
        );
    }
}
