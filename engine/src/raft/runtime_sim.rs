//! openraft's `AsyncRuntime` mapped onto madsim, active only under `cfg(madsim)`.
//!
//! openraft 0.9 routes spawn, sleep, timeouts, `Instant` and its RNG through this trait. The
//! default `TokioRuntime` cannot run in the simulator: it needs a real tokio reactor and draws
//! election jitter from `getrandom`, which madsim does not intercept (simulation reference,
//! "How openraft runs under madsim"). Here every one of those goes to madsim, so a seed fixes
//! every election timeout. `TokioInstant` already reads simulated time because madsim intercepts
//! `clock_gettime`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioInstant};

/// The simulated runtime.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SimRuntime;

/// A boxed, `Send` sleep: madsim's `Sleep` is wrapped so openraft can name the type.
pub struct SimSleep(Pin<Box<madsim::time::Sleep>>);

impl Future for SimSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// The error of a timed-out future.
#[derive(Debug)]
pub struct SimElapsed;

impl std::fmt::Display for SimElapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

/// A nameable, `Send` timeout future: madsim's own is opaque and not `Send`.
pub struct SimTimeout<R, F: Future<Output = R>> {
    future: Pin<Box<F>>,
    sleep: SimSleep,
}

impl<R, F: Future<Output = R>> Future for SimTimeout<R, F> {
    type Output = Result<R, SimElapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(SimElapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The oneshot sender, a newtype to satisfy openraft's trait.
pub struct SimOneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> std::fmt::Debug for SimOneshotSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimOneshotSender")
    }
}

impl<T: OptionalSend> openraft::async_runtime::AsyncOneshotSendExt<T> for SimOneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

fn to_std(deadline: TokioInstant) -> std::time::Instant {
    deadline.into_std()
}

impl AsyncRuntime for SimRuntime {
    type JoinError = madsim::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = madsim::task::JoinHandle<T>;
    type Sleep = SimSleep;
    type Instant = TokioInstant;
    type TimeoutError = SimElapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = SimTimeout<R, T>;
    type ThreadLocalRng = madsim::rand::GlobalRng;
    type OneshotSender<T: OptionalSend> = SimOneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        madsim::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        SimSleep(Box::pin(madsim::time::sleep(duration)))
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        SimSleep(Box::pin(madsim::time::sleep_until(to_std(deadline))))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        SimTimeout {
            future: Box::pin(future),
            sleep: Self::sleep(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        SimTimeout {
            future: Box::pin(future),
            sleep: Self::sleep_until(deadline),
        }
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        madsim::rand::thread_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (SimOneshotSender(tx), rx)
    }
}
