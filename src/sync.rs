//! Locks that survive a panic elsewhere.
//!
//! A std lock is "poisoned" when a thread panics while holding it. Every lock in
//! Pulse guards data that each critical section leaves whole (one assignment, one
//! insert, one histogram record), so the data behind a poisoned lock is still
//! valid: recovering it keeps a panic in one request from failing every later
//! request that needs the lock. One place says so, instead of a closure pasted
//! at each lock. (parking_lot's locks never poison, but would change the hot
//! path's measured costs for no gain here.)

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`], recovering a poisoned lock.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`RwLock::read`], recovering a poisoned lock.
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`RwLock::write`], recovering a poisoned lock.
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_locked_does_not_lock_everyone_else_out() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let held = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("a request panicked");
        })
        .join();
        assert!(mutex.is_poisoned());
        *lock(&mutex) += 1;
        assert_eq!(*lock(&mutex), 2);
        let rw = RwLock::new(vec![1]);
        write(&rw).push(2);
        assert_eq!(*read(&rw), [1, 2]);
    }
}
