//! Running the calling thread at idle priority (`SCHED_IDLE` on Linux): it
//! then gets CPU only when no other thread of the machine wants it. Used for
//! work that must never slow the ingest path: the embedded store's lookup
//! builder, and the calls of a mapper whose last call failed.

/// Switches the calling thread to idle scheduling (`true`) or back to the
/// normal policy (`false`); an unprivileged thread may do both. Where the
/// platform refuses, the thread keeps its scheduling (logged at debug).
#[cfg(target_os = "linux")]
pub(crate) fn set_idle(idle: bool) {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
    };
    let policy = if idle {
        NormalThreadSchedulePolicy::Idle
    } else {
        NormalThreadSchedulePolicy::Other
    };
    let priority = thread_priority::ThreadPriority::Min;
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), priority, ThreadSchedulePolicy::Normal(policy)) {
        tracing::debug!(error = ?e, idle, "cannot change this thread's scheduling; it keeps what it has");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_idle(_idle: bool) {}

/// Runs `f` with the calling thread at idle priority, then restores it.
pub(crate) fn at_idle_priority<R>(f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            set_idle(false);
        }
    }
    set_idle(true);
    let _restore = Restore;
    f()
}
