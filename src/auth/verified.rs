//! Verified credentials: a (user, password) pair that passed a bcrypt check against a given
//! hash within the last `VERIFIED_TTL` is accepted again without bcrypt. A fleet of services
//! restarting reconnects with the same credentials; nats-server spends its CPU on bcrypt there.
//!
//! Cold: one lookup per CONNECT that needs a bcrypt check (on the shard, one HMAC and one map
//! probe) and one insert per check that passed (on a pool thread).
//! Invariants: no password is stored, only HMAC-SHA256 under a key drawn at start-up (never
//! written anywhere) of the user, the password and the hash; an entry is used only with the very
//! hash it was verified against, and never after `VERIFIED_TTL`; the cache holds at most
//! `VERIFIED_MAX` entries; a reload drops the entries of hashes that are no longer configured.
// Why a std Mutex: shards look up and pool threads insert, once per slow CONNECT (cold); the
// lock is held for one map operation, or one sweep at most `VERIFIED_MAX` long.
#![allow(clippy::disallowed_types)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::Secret;

/// How long a verified pair is accepted without bcrypt ("a few minutes").
pub const VERIFIED_TTL: Duration = Duration::from_secs(5 * 60);
/// Entries kept at most. bcrypt reads only the first 72 bytes of a password, so one known
/// password yields any number of distinct verified pairs: the bound is what keeps a client
/// with valid credentials from growing the cache.
pub const VERIFIED_MAX: usize = 16 * 1024;

/// HMAC-SHA256 of a (user, password, hash) triple or of a hash alone.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint([redacted])")
    }
}

struct Entry {
    verified_at: Instant,
    /// The hash the pair was verified against, to drop the entry when a reload removes it.
    hash: Fingerprint,
}

/// The cache, shared by every shard and the pool threads.
pub struct VerifiedCache {
    key: [u8; 32],
    entries: Mutex<AHashMap<Fingerprint, Entry>>,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache").finish_non_exhaustive()
    }
}

impl Default for VerifiedCache {
    fn default() -> Self {
        VerifiedCache::new()
    }
}

/// Domain tags, so a pair's fingerprint can never equal a hash's.
const TAG_PAIR: u8 = b'p';
const TAG_HASH: u8 = b'h';

impl VerifiedCache {
    /// An empty cache with a fresh random key.
    pub fn new() -> VerifiedCache {
        VerifiedCache {
            key: rand::random(),
            entries: Mutex::new(AHashMap::new()),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; a 32-byte key cannot be refused.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }

    /// The fingerprint of `user` with `password` against `hash`. Each part is written with its
    /// length first, so no two triples share an input.
    pub fn pair(&self, user: &str, password: &Secret, hash: &Secret) -> Fingerprint {
        let mut mac = self.mac();
        mac.update(&[TAG_PAIR]);
        for part in [user, password.expose(), hash.expose()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        Fingerprint(mac.finalize().into_bytes().into())
    }

    /// The fingerprint of a configured hash.
    pub fn hash(&self, hash: &Secret) -> Fingerprint {
        let mut mac = self.mac();
        mac.update(&[TAG_HASH]);
        mac.update(hash.expose().as_bytes());
        Fingerprint(mac.finalize().into_bytes().into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AHashMap<Fingerprint, Entry>> {
        // A panic while holding the lock leaves a map that is still whole; keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `pair` was verified within `VERIFIED_TTL` before `now`. An expired entry is
    /// removed.
    pub fn is_verified(&self, pair: &Fingerprint, now: Instant) -> bool {
        let mut entries = self.lock();
        match entries.get(pair) {
            Some(entry) if now.saturating_duration_since(entry.verified_at) < VERIFIED_TTL => true,
            Some(_) => {
                entries.remove(pair);
                false
            }
            None => false,
        }
    }

    /// Records that `pair` passed a bcrypt check against `hash` at `now`. At the bound, expired
    /// entries go first, then the oldest ones.
    pub fn record(&self, pair: Fingerprint, hash: Fingerprint, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= VERIFIED_MAX && !entries.contains_key(&pair) {
            entries.retain(|_, e| now.saturating_duration_since(e.verified_at) < VERIFIED_TTL);
            if entries.len() >= VERIFIED_MAX {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.verified_at)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            pair,
            Entry {
                verified_at: now,
                hash,
            },
        );
    }

    /// After a reload: keeps only the entries verified against one of `hashes` (the bcrypt
    /// hashes now configured); a user whose hash changed logs in with bcrypt again.
    pub fn retain_hashes<'a>(&self, hashes: impl IntoIterator<Item = &'a Secret>) {
        let keep: ahash::AHashSet<Fingerprint> = hashes.into_iter().map(|h| self.hash(h)).collect();
        self.lock().retain(|_, e| keep.contains(&e.hash));
    }

    /// Entries held (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn a_recorded_pair_is_verified_until_it_expires() {
        let cache = VerifiedCache::new();
        let hash = secret("$2a$11$abc");
        let pair = cache.pair("alice", &secret("pw"), &hash);
        let t0 = Instant::now();
        assert!(!cache.is_verified(&pair, t0));
        cache.record(pair, cache.hash(&hash), t0);
        assert!(cache.is_verified(&pair, t0 + VERIFIED_TTL / 2));
        assert!(!cache.is_verified(&pair, t0 + VERIFIED_TTL));
        assert!(cache.is_empty(), "the expired entry is removed");
    }

    #[test]
    fn every_part_of_the_triple_matters() {
        let cache = VerifiedCache::new();
        let (pw, hash) = (secret("pw"), secret("$2a$11$abc"));
        let base = cache.pair("alice", &pw, &hash);
        assert_ne!(base, cache.pair("bob", &pw, &hash));
        assert_ne!(base, cache.pair("alice", &secret("pw2"), &hash));
        assert_ne!(base, cache.pair("alice", &pw, &secret("$2a$11$abd")));
        // Lengths come first: moving a byte from one part to the next changes the input.
        assert_ne!(
            cache.pair("ab", &secret("c"), &hash),
            cache.pair("a", &secret("bc"), &hash)
        );
        assert_ne!(
            base,
            VerifiedCache::new().pair("alice", &pw, &hash),
            "each process has its own key"
        );
    }

    #[test]
    fn a_reload_drops_the_entries_of_removed_hashes() {
        let cache = VerifiedCache::new();
        let (old, new) = (secret("$2a$11$old"), secret("$2a$11$new"));
        let now = Instant::now();
        let a = cache.pair("a", &secret("pw"), &old);
        let b = cache.pair("b", &secret("pw"), &new);
        cache.record(a, cache.hash(&old), now);
        cache.record(b, cache.hash(&new), now);
        cache.retain_hashes([&new]);
        assert!(!cache.is_verified(&a, now));
        assert!(cache.is_verified(&b, now));
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let cache = VerifiedCache::new();
        let hash = secret("$2a$11$abc");
        let h = cache.hash(&hash);
        let t0 = Instant::now();
        for i in 0..VERIFIED_MAX + 10 {
            let pair = cache.pair(&format!("u{i}"), &secret("pw"), &hash);
            cache.record(pair, h, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(cache.len(), VERIFIED_MAX);
        let first = cache.pair("u0", &secret("pw"), &hash);
        let last = cache.pair(&format!("u{}", VERIFIED_MAX + 9), &secret("pw"), &hash);
        let now = t0 + Duration::from_secs(1);
        assert!(!cache.is_verified(&first, now), "the oldest went first");
        assert!(cache.is_verified(&last, now));
    }
}
