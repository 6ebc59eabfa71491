//! Identifiers that more than one module uses: a shard's id and a subscription's key.
//!
//! A leaf: it depends on nothing in the crate, so `conn`, `monitor`, `shared` and `shard` can all
//! name a shard or a subscription without depending on each other. Each id is a newtype so two
//! bare integers cannot be swapped.

/// Identifies a shard; also its index in every per-shard vector.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// A subscription's key in the shard's subscription slab; what the local index stores.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct SubKey(pub u32);

/// Largest number of shards: forwarding keeps the set of target shards in a `u64` bitmask.
pub const SHARDS_MAX: usize = 64;
