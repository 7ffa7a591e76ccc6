//! Rows of registration: centres, machines and their staff; uploaded packets, their stage
//! history, de-duplication candidates, the demographic blocking index and adjudication cases.
//! Ids, digests, codes and scores only: packet contents are encrypted blobs, and opening them
//! happens above, in `tessera-registration`.

use crate::identities::{conflict, placeholders, rows_per_statement};
use crate::{Db, Result, StoreError, Tx, UnixMillis};

/// Longest centre name, in characters.
pub const CENTRE_NAME_CHARS_MAX: usize = 100;
/// Longest staff user id, in characters.
pub const USER_ID_CHARS_MAX: usize = 64;
/// Longest event detail stored (codes and field paths), in characters.
pub const DETAIL_CHARS_MAX: usize = 2000;
/// Largest page of packets listed.
pub const LIST_LIMIT_MAX: u32 = 1000;

/// A registration centre.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentreRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at_ms: UnixMillis,
}

/// A registration machine and the public half of its signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRow {
    pub id: String,
    pub centre_id: String,
    pub public_key: Vec<u8>,
    pub status: String,
    pub created_at_ms: UnixMillis,
}

/// # Errors
/// `Conflict` if the centre exists; `Invalid` for an over-long name; database errors.
pub async fn insert_centre(db: &Db, id: &str, name: &str, now: UnixMillis) -> Result<()> {
    if name.is_empty() || name.chars().count() > CENTRE_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid("centre name must be 1 to 100 printable characters"));
    }
    crate::on!(db, p => {
        sqlx::query("INSERT INTO reg_centres (id, name, status, created_at_ms, updated_at_ms) VALUES ($1, $2, 'active', $3, $3)")
            .bind(id)
            .bind(name)
            .bind(now)
            .execute(p)
            .await
            .map(|_| ())
    })
    .map_err(conflict)
}

/// Sets a centre `active` or `inactive`. Returns false if there is no such centre.
///
/// # Errors
/// Database errors (an unknown status violates the table's CHECK).
pub async fn set_centre_status(db: &Db, id: &str, status: &str, now: UnixMillis) -> Result<bool> {
    set_status(db, "reg_centres", id, status, now).await
}

/// `table` is one of ours, never input.
async fn set_status(db: &Db, table: &'static str, id: &str, status: &str, now: UnixMillis) -> Result<bool> {
    let sql = format!("UPDATE {table} SET status = $2, updated_at_ms = $3 WHERE id = $1");
    let n = crate::on!(db, p => {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(id).bind(status).bind(now).execute(p).await.map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

type CentreTuple = (String, String, String, i64);

/// # Errors
/// Database errors.
pub async fn centre(db: &Db, id: &str) -> Result<Option<CentreRow>> {
    let row: Option<CentreTuple> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, name, status, created_at_ms FROM reg_centres WHERE id = $1").bind(id).fetch_optional(p).await
    })?;
    Ok(row.map(|(id, name, status, created_at_ms)| CentreRow { id, name, status, created_at_ms }))
}

/// Every centre, by id.
///
/// # Errors
/// Database errors.
pub async fn centres(db: &Db) -> Result<Vec<CentreRow>> {
    let rows: Vec<CentreTuple> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, name, status, created_at_ms FROM reg_centres ORDER BY id LIMIT 100000").fetch_all(p).await
    })?;
    Ok(rows.into_iter().map(|(id, name, status, created_at_ms)| CentreRow { id, name, status, created_at_ms }).collect())
}

/// # Errors
/// `Conflict` if the machine id is taken; database errors (an unknown centre violates the
/// foreign key).
pub async fn insert_machine(db: &Db, id: &str, centre_id: &str, public_key: &[u8], now: UnixMillis) -> Result<()> {
    crate::on!(db, p => {
        sqlx::query(
            "INSERT INTO reg_machines (id, centre_id, public_key, status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, 'active', $4, $4)",
        )
        .bind(id)
        .bind(centre_id)
        .bind(public_key)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ())
    })
    .map_err(conflict)
}

/// Sets a machine `active` or `revoked`. Returns false if there is no such machine.
///
/// # Errors
/// Database errors.
pub async fn set_machine_status(db: &Db, id: &str, status: &str, now: UnixMillis) -> Result<bool> {
    set_status(db, "reg_machines", id, status, now).await
}

type MachineTuple = (String, String, Vec<u8>, String, i64);

fn machine_row((id, centre_id, public_key, status, created_at_ms): MachineTuple) -> MachineRow {
    MachineRow { id, centre_id, public_key, status, created_at_ms }
}

/// # Errors
/// Database errors.
pub async fn machine(db: &Db, id: &str) -> Result<Option<MachineRow>> {
    let row: Option<MachineTuple> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, centre_id, public_key, status, created_at_ms FROM reg_machines WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await
    })?;
    Ok(row.map(machine_row))
}

/// Every machine, by id.
///
/// # Errors
/// Database errors.
pub async fn machines(db: &Db) -> Result<Vec<MachineRow>> {
    let rows: Vec<MachineTuple> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, centre_id, public_key, status, created_at_ms FROM reg_machines ORDER BY id LIMIT 100000")
            .fetch_all(p)
            .await
    })?;
    Ok(rows.into_iter().map(machine_row).collect())
}

/// Assigns `user_id` to a centre as `operator` or `supervisor` (idempotent).
///
/// # Errors
/// `Invalid` for a bad user id; database errors (unknown centre, unknown role).
pub async fn assign_staff(db: &Db, centre_id: &str, user_id: &str, role: &str, now: UnixMillis) -> Result<()> {
    if user_id.is_empty() || user_id.chars().count() > USER_ID_CHARS_MAX || user_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(StoreError::Invalid("user id must be 1 to 64 characters without spaces"));
    }
    crate::on!(db, p => {
        sqlx::query(
            "INSERT INTO reg_staff (centre_id, user_id, role, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (centre_id, user_id, role) DO NOTHING",
        )
        .bind(centre_id)
        .bind(user_id)
        .bind(role)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Removes an assignment. Returns false if there was none.
///
/// # Errors
/// Database errors.
pub async fn unassign_staff(db: &Db, centre_id: &str, user_id: &str, role: &str) -> Result<bool> {
    let n = crate::on!(db, p => {
        sqlx::query("DELETE FROM reg_staff WHERE centre_id = $1 AND user_id = $2 AND role = $3")
            .bind(centre_id)
            .bind(user_id)
            .bind(role)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// `(user_id, role)` of everyone assigned to a centre.
///
/// # Errors
/// Database errors.
pub async fn staff(db: &Db, centre_id: &str) -> Result<Vec<(String, String)>> {
    crate::on!(db, p => {
        sqlx::query_as("SELECT user_id, role FROM reg_staff WHERE centre_id = $1 ORDER BY user_id, role LIMIT 100000")
            .bind(centre_id)
            .fetch_all(p)
            .await
    })
    .map_err(Into::into)
}

/// Whether `user_id` holds `role` at the centre.
///
/// # Errors
/// Database errors.
pub async fn is_staff(db: &Db, centre_id: &str, user_id: &str, role: &str) -> Result<bool> {
    let row: Option<(i64,)> = crate::on!(db, p => {
        sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM reg_staff WHERE centre_id = $1 AND user_id = $2 AND role = $3")
            .bind(centre_id)
            .bind(user_id)
            .bind(role)
            .fetch_optional(p)
            .await
    })?;
    Ok(row.is_some())
}

/// A packet as uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPacket {
    pub rid: String,
    pub digest: Vec<u8>,
    pub blob: String,
    pub centre_id: String,
    pub machine_id: String,
    pub uploaded_by: String,
    pub stage: String,
}

/// A packet and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRow {
    pub seq: i64,
    pub rid: String,
    pub digest: Vec<u8>,
    pub blob: String,
    pub centre_id: String,
    pub machine_id: String,
    pub uploaded_by: String,
    pub flow: Option<String>,
    pub status: String,
    pub stage: String,
    pub reason_code: Option<String>,
    pub abis_ref: Option<String>,
    pub identity_id: Option<String>,
    pub received_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
}

type PacketTuple = (
    i64,
    String,
    Vec<u8>,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

const PACKET_COLUMNS: &str = "seq, rid, digest, blob, centre_id, machine_id, uploaded_by, flow, status, stage, reason_code, abis_ref, \
                              identity_id, received_at_ms, updated_at_ms";

fn packet_row(t: PacketTuple) -> PacketRow {
    let (
        seq,
        rid,
        digest,
        blob,
        centre_id,
        machine_id,
        uploaded_by,
        flow,
        status,
        stage,
        reason_code,
        abis_ref,
        identity_id,
        received,
        updated,
    ) = t;
    PacketRow {
        seq,
        rid,
        digest,
        blob,
        centre_id,
        machine_id,
        uploaded_by,
        flow,
        status,
        stage,
        reason_code,
        abis_ref,
        identity_id,
        received_at_ms: received,
        updated_at_ms: updated,
    }
}

/// Adds an uploaded packet in the `processing` state; returns its arrival number.
///
/// # Errors
/// `Conflict` when the RID exists; database errors.
pub async fn insert_packet(tx: &mut Tx, p: &NewPacket, now: UnixMillis) -> Result<i64> {
    let (seq,): (i64,) = crate::on_tx!(tx, c => {
        sqlx::query_as(
            "INSERT INTO packets (rid, digest, blob, centre_id, machine_id, uploaded_by, status, stage, received_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'processing', $7, $8, $8) RETURNING seq",
        )
        .bind(&p.rid)
        .bind(&p.digest)
        .bind(&p.blob)
        .bind(&p.centre_id)
        .bind(&p.machine_id)
        .bind(&p.uploaded_by)
        .bind(&p.stage)
        .bind(now)
        .fetch_one(c)
        .await
    })
    .map_err(conflict)?;
    Ok(seq)
}

/// # Errors
/// Database errors.
pub async fn packet(db: &Db, rid: &str) -> Result<Option<PacketRow>> {
    let row: Option<PacketTuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {PACKET_COLUMNS} FROM packets WHERE rid = $1"))).bind(rid).fetch_optional(p).await
    })?;
    Ok(row.map(packet_row))
}

/// The packet, read inside a transaction and (on PostgreSQL) locked until it ends, so two
/// deliveries of the same stage cannot both move it on.
///
/// # Errors
/// Database errors.
pub async fn packet_for_update(tx: &mut Tx, rid: &str) -> Result<Option<PacketRow>> {
    let lock = match tx {
        Tx::Postgres(_) => " FOR UPDATE",
        Tx::Sqlite(_) => "",
    };
    let row: Option<PacketTuple> = crate::on_tx!(tx, c => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {PACKET_COLUMNS} FROM packets WHERE rid = $1{lock}")))
            .bind(rid)
            .fetch_optional(c)
            .await
    })?;
    Ok(row.map(packet_row))
}

/// Packets by RID (missing ones are left out).
///
/// # Errors
/// Database errors.
pub async fn packets_by_rid(db: &Db, rids: &[String]) -> Result<Vec<PacketRow>> {
    let rows = crate::select_in!(db, PacketTuple, rids, |list| format!("SELECT {PACKET_COLUMNS} FROM packets WHERE rid IN {list}"));
    Ok(rows.into_iter().map(packet_row).collect())
}

/// `(abis_ref, rid)` of the packets with these ABIS reference ids.
///
/// # Errors
/// Database errors.
pub async fn packets_by_abis_ref(db: &Db, refs: &[String]) -> Result<Vec<(String, String)>> {
    Ok(crate::select_in!(db, (String, String), refs, |list| format!("SELECT abis_ref, rid FROM packets WHERE abis_ref IN {list}")))
}

/// Packets in `status` (or all), oldest first, after arrival number `after`.
///
/// # Errors
/// Database errors.
pub async fn list_packets(db: &Db, status: Option<&str>, after: i64, limit: u32) -> Result<Vec<PacketRow>> {
    let limit = i64::from(limit.clamp(1, LIST_LIMIT_MAX));
    let rows: Vec<PacketTuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PACKET_COLUMNS} FROM packets WHERE ($1 IS NULL OR status = $1) AND seq > $2 ORDER BY seq LIMIT $3"
        )))
        .bind(status)
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await
    })?;
    Ok(rows.into_iter().map(packet_row).collect())
}

/// Counts of packets per status.
///
/// # Errors
/// Database errors.
pub async fn count_by_status(db: &Db) -> Result<Vec<(String, i64)>> {
    crate::on!(db, p => {
        sqlx::query_as("SELECT status, COUNT(*) FROM packets GROUP BY status ORDER BY status").fetch_all(p).await
    })
    .map_err(Into::into)
}

/// What a stage changes on a packet: only the fields given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketUpdate<'a> {
    pub status: Option<&'a str>,
    pub stage: Option<&'a str>,
    pub flow: Option<&'a str>,
    /// `Some(None)` clears the reason.
    pub reason_code: Option<Option<&'a str>>,
    pub abis_ref: Option<&'a str>,
    pub identity_id: Option<&'a str>,
}

/// Applies `u` to the packet.
///
/// # Errors
/// `Invalid` for an unknown RID; database errors.
pub async fn update_packet(tx: &mut Tx, rid: &str, u: &PacketUpdate<'_>, now: UnixMillis) -> Result<()> {
    let n = crate::on_tx!(tx, c => {
        sqlx::query(
            "UPDATE packets SET status = COALESCE($2, status), stage = COALESCE($3, stage), flow = COALESCE($4, flow), \
             reason_code = CASE WHEN $5 THEN $6 ELSE reason_code END, abis_ref = COALESCE($7, abis_ref), \
             identity_id = COALESCE($8, identity_id), updated_at_ms = $9 WHERE rid = $1",
        )
        .bind(rid)
        .bind(u.status)
        .bind(u.stage)
        .bind(u.flow)
        .bind(u.reason_code.is_some())
        .bind(u.reason_code.flatten())
        .bind(u.abis_ref)
        .bind(u.identity_id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    if n == 1 { Ok(()) } else { Err(StoreError::Invalid("no packet with this RID")) }
}

/// One entry of a packet's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub n: i64,
    pub stage: String,
    pub outcome: String,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub at_ms: UnixMillis,
}

/// Appends to a packet's history (the stages of one packet run one after another, so the next
/// number is the largest plus one).
///
/// # Errors
/// Database errors.
pub async fn add_event(
    tx: &mut Tx,
    rid: &str,
    stage: &str,
    outcome: &str,
    code: Option<&str>,
    detail: Option<&str>,
    now: UnixMillis,
) -> Result<()> {
    let detail: Option<String> = detail.map(|d| d.chars().take(DETAIL_CHARS_MAX).collect());
    crate::on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO packet_events (rid, n, stage, outcome, code, detail, at_ms) \
             SELECT $1, COALESCE(MAX(n), 0) + 1, $2, $3, $4, $5, $6 FROM packet_events WHERE rid = $1",
        )
        .bind(rid)
        .bind(stage)
        .bind(outcome)
        .bind(code)
        .bind(detail.as_deref())
        .bind(now)
        .execute(c)
        .await
        .map(|_| ())
    })
    .map_err(conflict)
}

type EventTuple = (i64, String, String, Option<String>, Option<String>, i64);

/// A packet's history, oldest first.
///
/// # Errors
/// Database errors.
pub async fn events(db: &Db, rid: &str) -> Result<Vec<EventRow>> {
    let rows: Vec<EventTuple> = crate::on!(db, p => {
        sqlx::query_as("SELECT n, stage, outcome, code, detail, at_ms FROM packet_events WHERE rid = $1 ORDER BY n LIMIT 10000")
            .bind(rid)
            .fetch_all(p)
            .await
    })?;
    Ok(rows.into_iter().map(|(n, stage, outcome, code, detail, at_ms)| EventRow { n, stage, outcome, code, detail, at_ms }).collect())
}

/// A registration another may duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRow {
    pub candidate_rid: String,
    pub source: String,
    pub score: f64,
    pub decision: String,
    pub detail: String,
}

/// Replaces the packet's candidates from `source` (a retried stage writes the same set again).
///
/// # Errors
/// Database errors.
pub async fn put_candidates(tx: &mut Tx, rid: &str, source: &str, rows: &[CandidateRow]) -> Result<()> {
    crate::on_tx!(&mut *tx, c => {
        sqlx::query("DELETE FROM packet_candidates WHERE rid = $1 AND source = $2").bind(rid).bind(source).execute(c).await.map(|_| ())
    })?;
    for r in rows {
        crate::on_tx!(&mut *tx, c => {
            sqlx::query("INSERT INTO packet_candidates (rid, candidate_rid, source, score, decision, detail) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(rid)
                .bind(&r.candidate_rid)
                .bind(source)
                .bind(r.score)
                .bind(&r.decision)
                .bind(&r.detail)
                .execute(c)
                .await
                .map(|_| ())
        })
        .map_err(conflict)?;
    }
    Ok(())
}

/// Every candidate of a packet, best first per source.
///
/// # Errors
/// Database errors.
pub async fn candidates(db: &Db, rid: &str) -> Result<Vec<CandidateRow>> {
    let rows: Vec<(String, String, f64, String, String)> = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT candidate_rid, source, score, decision, detail FROM packet_candidates WHERE rid = $1 \
             ORDER BY source, score DESC, candidate_rid LIMIT 1000",
        )
        .bind(rid)
        .fetch_all(p)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(candidate_rid, source, score, decision, detail)| CandidateRow { candidate_rid, source, score, decision, detail })
        .collect())
}

/// Adds a packet's demographic blocking digests (idempotent).
///
/// # Errors
/// Database errors.
pub async fn put_demo_keys(tx: &mut Tx, rid: &str, digests: &[Vec<u8>]) -> Result<()> {
    for chunk in digests.chunks(rows_per_statement(2)) {
        let sql =
            format!("INSERT INTO reg_demo_keys (digest, rid) VALUES {} ON CONFLICT (digest, rid) DO NOTHING", placeholders(chunk.len(), 2));
        crate::on_tx!(&mut *tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for d in chunk {
                q = q.bind(d).bind(rid);
            }
            q.execute(c).await.map(|_| ())
        })?;
    }
    Ok(())
}

/// Removes a packet's blocking digests (a rejected or duplicate registration is nobody's
/// candidate).
///
/// # Errors
/// Database errors.
pub async fn delete_demo_keys(tx: &mut Tx, rid: &str) -> Result<()> {
    crate::on_tx!(tx, c => sqlx::query("DELETE FROM reg_demo_keys WHERE rid = $1").bind(rid).execute(c).await.map(|_| ()))?;
    Ok(())
}

/// RIDs sharing any of `digests`, with how many they share, most first, at most `limit`.
///
/// # Errors
/// Database errors.
pub async fn find_demo_keys(db: &Db, digests: &[Vec<u8>], limit: u32) -> Result<Vec<(String, i64)>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    if digests.len() > rows_per_statement(1) {
        return Err(StoreError::Invalid("too many blocking keys"));
    }
    let sql = format!(
        "SELECT rid, COUNT(*) AS shared FROM reg_demo_keys WHERE digest IN {} GROUP BY rid ORDER BY shared DESC, rid LIMIT {}",
        placeholders(1, digests.len()),
        limit.clamp(1, LIST_LIMIT_MAX)
    );
    crate::on!(db, p => {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
        for d in digests {
            q = q.bind(d);
        }
        q.fetch_all(p).await
    })
    .map_err(Into::into)
}

/// An adjudication case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjudicationRow {
    pub id: String,
    pub rid: String,
    pub state: String,
    pub decision: Option<String>,
    pub duplicate_of: Option<String>,
    pub reason: Option<Vec<u8>>,
    pub decided_by: Option<String>,
    pub created_at_ms: UnixMillis,
    pub decided_at_ms: Option<UnixMillis>,
}

type AdjTuple = (String, String, String, Option<String>, Option<String>, Option<Vec<u8>>, Option<String>, i64, Option<i64>);

fn adjudication_row(
    (id, rid, state, decision, duplicate_of, reason, decided_by, created_at_ms, decided_at_ms): AdjTuple,
) -> AdjudicationRow {
    AdjudicationRow { id, rid, state, decision, duplicate_of, reason, decided_by, created_at_ms, decided_at_ms }
}

const ADJ_COLUMNS: &str = "id, rid, state, decision, duplicate_of, reason, decided_by, created_at_ms, decided_at_ms";

/// Opens a case for a packet (idempotent: a packet has at most one). Returns the case id.
///
/// # Errors
/// Database errors.
pub async fn open_adjudication(tx: &mut Tx, id: &str, rid: &str, now: UnixMillis) -> Result<String> {
    crate::on_tx!(&mut *tx, c => {
        sqlx::query("INSERT INTO adjudications (id, rid, state, created_at_ms) VALUES ($1, $2, 'open', $3) ON CONFLICT (rid) DO NOTHING")
            .bind(id)
            .bind(rid)
            .bind(now)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    let (id,): (String,) = crate::on_tx!(tx, c => {
        sqlx::query_as("SELECT id FROM adjudications WHERE rid = $1").bind(rid).fetch_one(c).await
    })?;
    Ok(id)
}

/// # Errors
/// Database errors.
pub async fn adjudication(db: &Db, id: &str) -> Result<Option<AdjudicationRow>> {
    let row: Option<AdjTuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ADJ_COLUMNS} FROM adjudications WHERE id = $1"))).bind(id).fetch_optional(p).await
    })?;
    Ok(row.map(adjudication_row))
}

/// The case of a packet, if any.
///
/// # Errors
/// Database errors.
pub async fn adjudication_of(db: &Db, rid: &str) -> Result<Option<AdjudicationRow>> {
    let row: Option<AdjTuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ADJ_COLUMNS} FROM adjudications WHERE rid = $1"))).bind(rid).fetch_optional(p).await
    })?;
    Ok(row.map(adjudication_row))
}

/// Cases in `state` (or all), oldest first (by creation, then id), after case `after` when
/// given (a page's last id; an unknown id yields nothing).
///
/// # Errors
/// Database errors.
pub async fn adjudications(db: &Db, state: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<AdjudicationRow>> {
    let rows: Vec<AdjTuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ADJ_COLUMNS} FROM adjudications WHERE ($1 IS NULL OR state = $1) \
             AND ($2 IS NULL OR (created_at_ms, id) > (SELECT created_at_ms, id FROM adjudications WHERE id = $2)) \
             ORDER BY created_at_ms, id LIMIT $3"
        )))
        .bind(state)
        .bind(after)
        .bind(i64::from(limit.clamp(1, LIST_LIMIT_MAX)))
        .fetch_all(p)
        .await
    })?;
    Ok(rows.into_iter().map(adjudication_row).collect())
}

/// Records the decision on an open case. Returns false if the case was not open (decided
/// already, or unknown): a decision is made once.
///
/// # Errors
/// Database errors.
pub async fn decide_adjudication(
    tx: &mut Tx,
    id: &str,
    decision: &str,
    duplicate_of: Option<&str>,
    reason: &[u8],
    decided_by: &str,
    now: UnixMillis,
) -> Result<bool> {
    let n = crate::on_tx!(tx, c => {
        sqlx::query(
            "UPDATE adjudications SET state = 'decided', decision = $2, duplicate_of = $3, reason = $4, decided_by = $5, decided_at_ms = $6 \
             WHERE id = $1 AND state = 'open'",
        )
        .bind(id)
        .bind(decision)
        .bind(duplicate_of)
        .bind(reason)
        .bind(decided_by)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Links an identity to another (`kind` = `guardian`: the child's identity to its guardian's),
/// idempotently.
///
/// # Errors
/// Database errors.
pub async fn insert_link(tx: &mut Tx, identity_id: &str, kind: &str, other_id: &str, rid: &str, now: UnixMillis) -> Result<()> {
    crate::on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO identity_links (identity_id, kind, other_id, rid, created_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (identity_id, kind, other_id) DO NOTHING",
        )
        .bind(identity_id)
        .bind(kind)
        .bind(other_id)
        .bind(rid)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// `(kind, other identity id, rid)` of an identity's links.
///
/// # Errors
/// Database errors.
pub async fn links_of(db: &Db, identity_id: &str) -> Result<Vec<(String, String, String)>> {
    Ok(crate::on!(db, p => {
        sqlx::query_as("SELECT kind, other_id, rid FROM identity_links WHERE identity_id = $1 ORDER BY kind, other_id")
            .bind(identity_id)
            .fetch_all(p)
            .await
    })?)
}
