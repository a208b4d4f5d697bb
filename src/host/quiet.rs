//! gearbox's own key reads (a record's value, a key's type) raise keyspace events such as
//! `keymiss`; those are not the user's events. The host marks the thread quiet around such reads
//! and the event side (`events::keyspace`) skips what arrives meanwhile.

use std::cell::Cell;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (gearbox's own key reads) without delivering the keyspace events it raises.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _restore = Restore(QUIET.with(|q| q.replace(true)));
    f()
}

/// Whether this thread is inside [`quietly`].
pub fn is_quiet() -> bool {
    QUIET.with(|q| q.get())
}
