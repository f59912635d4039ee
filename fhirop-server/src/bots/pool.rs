//! The pool of QuickJS worker threads. Bots never run on actix workers: a call is queued
//! (bounded; full → 503 with `Retry-After`), a worker runs it in a fresh context, and the
//! result comes back on a oneshot channel.

use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use actix_web::http::StatusCode;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use fhirop::outcome::{IssueType, OperationError};
use tokio::sync::oneshot;

use super::host::{HostSpec, StoreHost};
use super::sandbox::{BotError, Engine, SandboxLimits};

/// What a worker is asked to do.
enum Job {
    Compile {
        source: String,
        reply: oneshot::Sender<Result<Vec<u8>, BotError>>,
    },
    Run {
        bytecode: Arc<Vec<u8>>,
        event: String,
        host: HostSpec,
        timeout: Duration,
        reply: oneshot::Sender<Execution>,
    },
}

/// A finished execution: the value as JSON text (or why there is none) and the captured
/// console lines, which a failed execution keeps too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// `JSON.stringify` of the handler's value.
    pub value: Result<String, BotError>,
    /// `level: text` console lines.
    pub log: Vec<String>,
}

/// The worker threads and their queue.
#[derive(Debug, Clone)]
pub struct BotPool {
    jobs: Sender<Job>,
    limits: SandboxLimits,
}

fn queue_full() -> OperationError {
    OperationError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Throttled,
        "every Bot worker is busy and the queue is full; retry shortly",
    )
    .with_header("Retry-After", "1")
}

fn worker_gone() -> OperationError {
    OperationError::internal("the Bot worker stopped before answering; the server logged the details")
}

impl BotPool {
    /// Starts `workers` threads sharing a queue of `queue` jobs.
    pub fn start(workers: usize, queue: usize, limits: SandboxLimits) -> std::io::Result<BotPool> {
        let (jobs, receiver) = crossbeam_channel::bounded(queue);
        for index in 0..workers.max(1) {
            let receiver = receiver.clone();
            thread::Builder::new()
                .name(format!("fhirop-bot-{index}"))
                // QuickJS's own stack limit is far below this, so deep recursion fails in
                // JavaScript, not in the thread.
                .stack_size(8 * 1024 * 1024)
                .spawn(move || work(receiver, limits))?;
        }
        Ok(BotPool { jobs, limits })
    }

    /// The limits Bots run under.
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    fn submit(&self, job: Job) -> Result<(), OperationError> {
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => queue_full(),
            TrySendError::Disconnected(_) => worker_gone(),
        })
    }

    /// Compiles source to bytecode on a worker.
    pub async fn compile(&self, source: String) -> Result<Result<Vec<u8>, BotError>, OperationError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Compile { source, reply })?;
        answer.await.map_err(|_| worker_gone())
    }

    /// Runs a Bot on a worker.
    pub async fn run(
        &self,
        bytecode: Arc<Vec<u8>>,
        event: String,
        host: HostSpec,
        timeout: Duration,
    ) -> Result<Execution, OperationError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Run {
            bytecode,
            event,
            host,
            timeout,
            reply,
        })?;
        answer.await.map_err(|_| worker_gone())
    }
}

fn work(jobs: Receiver<Job>, limits: SandboxLimits) {
    let mut engine = None;
    for job in jobs {
        let current = match engine.take() {
            Some(current) => current,
            None => match Engine::new(limits) {
                Ok(created) => created,
                Err(error) => {
                    tracing::error!("a Bot worker could not start QuickJS: {error}");
                    reply_error(job, error);
                    continue;
                }
            },
        };
        let keep = match job {
            Job::Compile { source, reply } => {
                let _ = reply.send(current.compile(&source));
                true
            }
            Job::Run {
                bytecode,
                event,
                host,
                timeout,
                reply,
            } => {
                let host = Rc::new(StoreHost::new(host));
                // A panic inside the engine must not take the worker thread with it.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    current.run(&bytecode, &event, host.clone(), timeout)
                }))
                .unwrap_or_else(|_| {
                    Err(BotError::Engine(
                        "the engine panicked; the server logged the details".into(),
                    ))
                });
                // The next execution starts from a restored image whatever this one did, out
                // of memory or not; a runtime that failed inside (or panicked) is not trusted
                // again.
                let keep = !matches!(result, Err(BotError::Engine(_)));
                let _ = reply.send(Execution {
                    value: result,
                    log: host.take_log(),
                });
                keep
            }
        };
        if keep {
            engine = Some(current);
        }
    }
}

fn reply_error(job: Job, error: BotError) {
    match job {
        Job::Compile { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Job::Run { reply, .. } => {
            let _ = reply.send(Execution {
                value: Err(error),
                log: Vec::new(),
            });
        }
    }
}
