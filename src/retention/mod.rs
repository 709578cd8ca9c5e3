//! Which tags a run deletes beyond plain garbage: the retention [`policy`],
//! the references that are never deleted ([`protect`]), and the registry's
//! own logs ([`pulls`], read through [`logwrap`]) that tell what was pulled
//! lately.

pub mod logwrap;
pub mod policy;
pub mod protect;
pub mod pulls;
