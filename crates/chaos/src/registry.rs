//! What the harness knows about the jobs it submitted: the batch each one was
//! accepted with, and the last progress a client saw of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use rand::seq::IteratorRandom;
use uuid::Uuid;

use crate::api::JobView;
use crate::records::{Batch, Resource};

pub struct Tracked {
    pub batch: Arc<Batch>,
    /// The latest look the observer had at the job.
    pub seen: Option<JobView>,
}

#[derive(Default)]
pub struct Registry {
    jobs: Mutex<HashMap<Uuid, Tracked>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Tracked>> {
        // A panic elsewhere ends the run anyway; the map itself stays whole.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an accepted job; false when it was known already.
    pub fn accept(&self, id: Uuid, batch: Arc<Batch>) -> bool {
        let mut jobs = self.lock();
        if jobs.contains_key(&id) {
            return false;
        }
        jobs.insert(id, Tracked { batch, seen: None });
        true
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Jobs not yet seen in a final status.
    pub fn unfinished(&self) -> Vec<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, t)| !t.seen.is_some_and(|s| s.status.is_terminal()))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Records a look at a job and returns the previous one.
    pub fn observe(&self, id: Uuid, view: JobView) -> Option<JobView> {
        self.lock().get_mut(&id).and_then(|t| t.seen.replace(view))
    }

    /// Up to `n` accepted jobs, chosen at random, whatever their status.
    pub fn sample(&self, rng: &mut impl Rng, n: usize) -> Vec<(Uuid, Resource)> {
        self.lock()
            .iter()
            .map(|(id, t)| (*id, t.batch.resource))
            .choose_multiple(rng, n)
    }

    /// Every accepted job with its batch and the last look at it.
    pub fn snapshot(&self) -> Vec<(Uuid, Arc<Batch>, Option<JobView>)> {
        self.lock()
            .iter()
            .map(|(id, t)| (*id, t.batch.clone(), t.seen))
            .collect()
    }
}
