//! Group commit: work that many callers hand in at once commits together, so SQLite's one
//! writer fsyncs once for all of them (see [`GroupCommit`]). The payment callbacks and the
//! order flow's writes use it.

use std::sync::Arc;

use sqlx::Acquire;

use crate::{
    store::{self, Backend, Conn, Db},
    trace::{self, TraceContext},
};

/// Work that many callers hand in at once and that commits together: one transaction (one
/// fsync) for whatever arrived while the previous one committed; one job's failure rolls
/// back only that job (see [`commit_group`]). A caller alone waits for nothing; callers
/// together share the cost of the commit.
pub trait Commit: Send + Sync + 'static {
    type Job: Send + Sync + 'static;
    type Done: Send + 'static;
    type Error: Send + From<sqlx::Error> + 'static;
    fn run<'c>(&'c self, conn: &'c mut Conn, job: &'c Self::Job) -> impl std::future::Future<Output = Result<Self::Done, Self::Error>> + Send + 'c;
    /// Called once the transaction committed with at least one job done.
    fn committed(&self) {}
    /// Whether jobs share transactions on Postgres too. Postgres commits concurrent
    /// transactions side by side and groups their WAL flushes itself; a shared transaction
    /// there only pays off when its jobs cannot hold row locks that other writers take in
    /// another order (else two such transactions can deadlock). Without it, each job runs
    /// in a transaction of its own, in the submitter's task.
    const GROUPED_ON_POSTGRES: bool = true;
}

type Reply<C> = tokio::sync::oneshot::Sender<Result<<C as Commit>::Done, <C as Commit>::Error>>;
/// A job as queued: the job, where to answer, and the submitter's trace context (the job
/// runs on the committing task, but belongs to the submitter's trace).
type Queued<C> = (<C as Commit>::Job, Reply<C>, Option<TraceContext>);

/// The queue in front of a [`Commit`] and the task that drains it; or, where jobs are not
/// grouped (see [`Commit::GROUPED_ON_POSTGRES`]), the work itself.
pub struct GroupCommit<C: Commit> {
    to: Committer<C>,
}

enum Committer<C: Commit> {
    Queue(tokio::sync::mpsc::Sender<Queued<C>>),
    Alone(Db, Arc<C>),
}

/// The most jobs one transaction takes.
const GROUP: usize = 256;

impl<C: Commit> Clone for GroupCommit<C> {
    fn clone(&self) -> Self {
        let to = match &self.to {
            Committer::Queue(jobs) => Committer::Queue(jobs.clone()),
            Committer::Alone(db, work) => Committer::Alone(db.clone(), work.clone()),
        };
        GroupCommit { to }
    }
}

impl<C: Commit> GroupCommit<C> {
    /// Starts the committing task (on the current tokio runtime).
    pub fn start(db: Db, work: C) -> GroupCommit<C> {
        if db.backend() == Backend::Postgres && !C::GROUPED_ON_POSTGRES {
            return GroupCommit { to: Committer::Alone(db, Arc::new(work)) };
        }
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<Queued<C>>(GROUP * 4);
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut group = vec![first];
                while group.len() < GROUP {
                    match queue.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                let jobs: Vec<(&C::Job, Option<TraceContext>)> = group.iter().map(|(job, _, context)| (job, *context)).collect();
                let results = commit_group(&db, &work, &jobs).await;
                for ((_, reply, _), result) in group.into_iter().zip(results) {
                    let _ = reply.send(result); // a caller that gave up does not care
                }
            }
        });
        GroupCommit { to: Committer::Queue(jobs) }
    }

    pub async fn submit(&self, job: C::Job) -> Result<C::Done, C::Error> {
        let jobs = match &self.to {
            Committer::Queue(jobs) => jobs,
            Committer::Alone(db, work) => {
                let mut results = commit_group(db, &**work, &[(&job, None)]).await;
                return results.pop().expect("one result per job");
            }
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || C::Error::from(sqlx::Error::Protocol("the committing task stopped".into()));
        jobs.send((job, reply, trace::current())).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Runs `group` (each job with its submitter's trace context) in one transaction.
async fn commit_group<C: Commit>(db: &Db, work: &C, group: &[(&C::Job, Option<TraceContext>)]) -> Vec<Result<C::Done, C::Error>> {
    let failed = |e: &sqlx::Error| C::Error::from(store::copied(e));
    // Jobs seldom fail, so the group first runs as one plain transaction. Only when one of
    // several jobs fails does it run again with a savepoint per job (two statements more
    // each), so that the failure rolls back alone; a job alone needs none.
    let mut savepoints = false;
    loop {
        let mut tx = match db.begin().await {
            Ok(tx) => tx,
            Err(e) => return group.iter().map(|_| Err(failed(&e))).collect(),
        };
        let mut results = Vec::with_capacity(group.len());
        let (mut again, mut lost) = (false, None);
        for (job, context) in group {
            let one = async {
                if !savepoints {
                    return work.run(&mut tx, job).await;
                }
                let mut savepoint = tx.begin().await?;
                let done = work.run(&mut savepoint, job).await;
                if let Err(e) = store::end_savepoint(savepoint, done.is_ok()).await {
                    lost = Some(e);
                }
                done
            };
            results.push(trace::maybe_scope(*context, one).await);
            if let Some(e) = lost.take() {
                // The transaction is gone: what succeeded in it, and what did not run, did not
                // happen; a job that failed keeps its own answer.
                let gone = || C::Error::from(store::lost(&e));
                let mut answers: Vec<_> = results.into_iter().map(|r| r.and_then(|_| Err(gone()))).collect();
                answers.resize_with(group.len(), || Err(gone()));
                return answers;
            }
            if !savepoints && group.len() > 1 && results.last().is_some_and(Result::is_err) {
                again = true;
                break;
            }
        }
        if again {
            savepoints = true; // drops `tx`, rolling it back, and runs the group again
            continue;
        }
        if results.iter().all(Result::is_err) {
            return results; // nothing to commit: `tx` rolls back
        }
        return match tx.commit().await {
            Ok(()) => {
                work.committed();
                results
            }
            Err(e) => results.into_iter().map(|r| r.and_then(|_| Err(failed(&e)))).collect(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserts its number, then fails when the number is 13: the insert must not survive.
    struct Insert;

    impl Commit for Insert {
        type Job = i64;
        type Done = ();
        type Error = sqlx::Error;

        async fn run(&self, conn: &mut Conn, n: &i64) -> Result<(), sqlx::Error> {
            sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(*n).execute(&mut *conn).await?;
            if *n == 13 {
                return Err(sqlx::Error::Protocol("thirteen".into()));
            }
            if *n == 666 {
                // What SQLite does by itself on an I/O error or a full disk: the whole
                // transaction is rolled back, the other jobs' writes with it.
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                return Err(sqlx::Error::Protocol("disk I/O error".into()));
            }
            Ok(())
        }
    }

    /// A SQLite file with table `t` of numbers, and a group commit of [`Insert`] on it.
    async fn numbers() -> (tempfile::TempDir, Db, GroupCommit<Insert>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/g.db", dir.path().display()), 4).await.unwrap();
        db.execute(sqlx::query("CREATE TABLE t (n INTEGER NOT NULL)")).await.unwrap();
        let commit = GroupCommit::start(db.clone(), Insert);
        (dir, db, commit)
    }

    #[tokio::test]
    async fn a_failed_job_rolls_back_alone_in_a_group_and_alone() {
        let (_dir, db, commit) = numbers().await;
        // Submitted together (the committing task runs once the test task waits), so they
        // share one transaction: 13 in the middle of a group, then last of one, then alone.
        for jobs in [(0..40).collect::<Vec<i64>>(), vec![100, 101, 102, 13], vec![13]] {
            let results = futures::future::join_all(jobs.iter().map(|n| commit.submit(*n))).await;
            for (n, r) in jobs.iter().zip(&results) {
                assert_eq!(r.is_ok(), *n != 13, "job {n}: {r:?}");
            }
        }
        let stored: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n").fetch_all(db.pool()).await.unwrap();
        let expected: Vec<i64> = (0..40).filter(|n| *n != 13).chain([100, 101, 102]).collect();
        assert_eq!(stored, expected);
    }

    #[tokio::test]
    async fn a_group_whose_transaction_sqlite_rolled_back_answers_every_job_failed() {
        let (_dir, db, commit) = numbers().await;
        let jobs = [1, 13, 2, 666, 3, 4];
        let results = futures::future::join_all(jobs.iter().map(|n| commit.submit(*n))).await;
        // A job that failed keeps its own answer; the others say the transaction is gone.
        let said = |i: usize| results[i].as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(said(1).contains("thirteen") && said(3).contains("disk I/O error"), "{results:?}");
        assert!([0, 2, 4, 5].iter().all(|i| said(*i).contains("rolled the transaction back")), "{results:?}");
        let stored: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n").fetch_all(db.pool()).await.unwrap();
        // Answered as it stands: no job answered done whose row is missing, none answered
        // failed whose row is there.
        for (n, r) in jobs.iter().zip(&results) {
            assert_eq!(r.is_ok(), stored.contains(n), "job {n}: {r:?}, stored {stored:?}");
        }
        // And the next group commits as usual.
        assert!(commit.submit(5).await.is_ok());
        let stored: Vec<i64> = sqlx::query_scalar("SELECT n FROM t WHERE n = 5").fetch_all(db.pool()).await.unwrap();
        assert_eq!(stored, [5]);
    }
}
