//! Who is asking: the ACL user of the command being served, and whether it is a gearbox
//! administrator. A tenant sees and controls only the objects it owns (sessions, registrations,
//! executions: their session's owner); an administrator sees everything; commands from the master
//! link or loading have no user and act as an administrator. Another owner's object answers
//! exactly as an unknown id would, so a tenant cannot learn that it exists.

use crate::host::acl_users;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi::Ctx;
use crate::host::redis_hooks;

pub struct Viewer {
    name: Option<String>,
    admin: bool,
}

impl Viewer {
    /// The user running the current command.
    pub fn of(ctx: Ctx) -> Viewer {
        let name = redis_hooks::current_user_name(ctx);
        let lock = RedisLock::acquire();
        let admin = name.as_deref().is_none_or(|name| acl_users::is_admin(lock.held(), name));
        Viewer { name, admin }
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether this user may see (and control) an object owned by `owner`.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        self.admin || (owner.is_some() && owner == self.name.as_deref())
    }
}
