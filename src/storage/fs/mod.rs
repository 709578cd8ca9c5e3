//! The filesystem backend: the storage tree of the registry's `filesystem`
//! driver, read through directory handles ([`dir`]) into the index
//! ([`index`]), checked for uploads and leftovers ([`hygiene`]), looked at
//! again before deleting ([`recheck`]), swept ([`sweep`]) or moved into a
//! restorable batch ([`trash`]), under a lock that keeps two runs apart
//! ([`lock`]).

pub mod dir;
pub mod hygiene;
pub mod index;
pub mod lock;
pub mod recheck;
pub mod sweep;
pub mod trash;
