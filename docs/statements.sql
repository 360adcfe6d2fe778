-- The SQL Agora runs, as printed by `python -m app.db.statements` (tests/test_statements.py
-- keeps docs/statements.sql equal to it). PostgreSQL gets $n parameters, SQLite named ones.

-- USER_BY_ID
-- parameters: user_id
-- PostgreSQL:
SELECT users.id, users.email, users.created_at, users.phone_number
FROM users
WHERE users.id = $1::INTEGER;
-- SQLite:
SELECT users.id, users.email, users.created_at, users.phone_number
FROM users
WHERE users.id = :user_id;

-- VIEWER_ACCOUNT (proves the viewer's account)
-- parameters: viewer_id, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT users.id, users.email, users.created_at, users.phone_number
FROM users
WHERE users.id = $1::INTEGER AND users.token_generation = $2::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $3::VARCHAR));
-- SQLite:
SELECT users.id, users.email, users.created_at, users.phone_number
FROM users
WHERE users.id = :viewer_id AND users.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti));

-- VIEWER_PASSWORD (proves the viewer's account)
-- parameters: viewer_id, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT users.id, users.password
FROM users
WHERE users.id = $1::INTEGER AND users.token_generation = $2::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $3::VARCHAR));
-- SQLite:
SELECT users.id, users.password
FROM users
WHERE users.id = :viewer_id AND users.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti));

-- USER_FOR_LOGIN
-- parameters: email
-- PostgreSQL:
SELECT users.id, users.password, users.token_generation
FROM users
WHERE lower(users.email) = lower($1);
-- SQLite:
SELECT users.id, users.password, users.token_generation
FROM users
WHERE lower(users.email) = lower(:email);

-- MAX_BCRYPT_ROUNDS
-- parameters: none
-- PostgreSQL:
SELECT max(CAST(substr(password, 5, 2) AS INTEGER)) AS rounds FROM users WHERE password LIKE '$2_$__$%';
-- SQLite:
SELECT max(CAST(substr(password, 5, 2) AS INTEGER)) AS rounds FROM users WHERE password LIKE '$2_$__$%';

-- SET_PASSWORD_HASH
-- parameters: new_hash, user_id
-- PostgreSQL:
UPDATE users SET password=$1::VARCHAR WHERE users.id = $2::INTEGER;
-- SQLite:
UPDATE users SET password=:new_hash WHERE users.id = :user_id;

-- UPDATE_PHONE_NUMBER (proves the viewer's account)
-- parameters: phone_number, viewer_id, viewer_generation, viewer_jti
-- PostgreSQL:
UPDATE users SET phone_number=$1::VARCHAR WHERE users.id = $2::INTEGER AND users.token_generation = $3::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $4::VARCHAR)) RETURNING users.id, users.email, users.created_at, users.phone_number;
-- SQLite:
UPDATE users SET phone_number=:phone_number WHERE users.id = :viewer_id AND users.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti)) RETURNING id, email, created_at, phone_number;

-- CHANGE_PASSWORD (proves the viewer's account)
-- parameters: new_hash, viewer_id, viewer_generation, viewer_jti
-- PostgreSQL:
UPDATE users SET password=$1::VARCHAR, token_generation=(users.token_generation + 1) WHERE users.id = $2::INTEGER AND users.token_generation = $3::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $4::VARCHAR)) RETURNING users.id;
-- SQLite:
UPDATE users SET password=:new_hash, token_generation=(users.token_generation + 1) WHERE users.id = :viewer_id AND users.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti)) RETURNING id;

-- LOG_OUT_EVERYWHERE (proves the viewer's account)
-- parameters: viewer_id, viewer_generation, viewer_jti
-- PostgreSQL:
UPDATE users SET token_generation=(users.token_generation + 1) WHERE users.id = $1::INTEGER AND users.token_generation = $2::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $3::VARCHAR)) RETURNING users.id;
-- SQLite:
UPDATE users SET token_generation=(users.token_generation + 1) WHERE users.id = :viewer_id AND users.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti)) RETURNING id;

-- DELETE_ACCOUNT (proves the viewer's account)
-- parameters: viewer_id, viewer_generation, viewer_jti
-- PostgreSQL:
DELETE FROM users WHERE users.id = $1::INTEGER AND users.token_generation = $2::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $3::VARCHAR)) RETURNING users.id;
-- SQLite:
DELETE FROM users WHERE users.id = :viewer_id AND users.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti)) RETURNING id;

-- INSERT_USER
-- parameters: email, password, phone_number
-- PostgreSQL:
INSERT INTO users (email, password, phone_number) VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR) ON CONFLICT DO NOTHING RETURNING users.id, users.email, users.created_at, users.phone_number;
-- SQLite:
INSERT INTO users (email, password, phone_number) VALUES (:email, :password, :phone_number) ON CONFLICT DO NOTHING RETURNING id, email, created_at, phone_number;

-- LIST_POSTS[False, False] (proves the viewer's account)
-- parameters: viewer_id, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.published OR posts.owner_id = $1::INTEGER ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $2 OFFSET $3) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $4::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $5::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.published = 1 OR posts.owner_id = :viewer_id ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- LIST_POSTS[False, True] (proves the viewer's account)
-- parameters: viewer_id, before_id, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published OR posts.owner_id = $1::INTEGER) AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = $2::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $2) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $3 OFFSET $4) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $5::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $6::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published = 1 OR posts.owner_id = :viewer_id) AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = :before_id AND (cursor.published = 1 OR cursor.owner_id = :viewer_id)), :before_id) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- LIST_POSTS[True, False] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, pattern, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published OR posts.owner_id = $1::INTEGER) AND posts.title_folded LIKE $2::VARCHAR ESCAPE '/' ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $3 OFFSET $4) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $5::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $6::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published = 1 OR posts.owner_id = :viewer_id) AND posts.title_folded LIKE :pattern ESCAPE '/' ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- LIST_POSTS[True, True] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, pattern, before_id, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published OR posts.owner_id = $1::INTEGER) AND posts.title_folded LIKE $2::VARCHAR ESCAPE '/' AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = $3::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $3) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $4 OFFSET $5) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $6::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $7::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published = 1 OR posts.owner_id = :viewer_id) AND posts.title_folded LIKE :pattern ESCAPE '/' AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = :before_id AND (cursor.published = 1 OR cursor.owner_id = :viewer_id)), :before_id) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- RECENT_SEARCH[False] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, pattern, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT recent.id AS id, recent.title AS title, recent.content AS content, recent.published AS published, recent.created_at AS created_at, recent.owner_id AS owner_id
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 500) AS recent
WHERE (recent.published OR recent.owner_id = $1::INTEGER) AND recent.title_folded LIKE $2::VARCHAR ESCAPE '/' ORDER BY recent.created_at DESC, recent.id DESC
 LIMIT $3 OFFSET $4) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $5::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $6::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT recent.id AS id, recent.title AS title, recent.content AS content, recent.published AS published, recent.created_at AS created_at, recent.owner_id AS owner_id
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 500 OFFSET :param_1) AS recent
WHERE (recent.published = 1 OR recent.owner_id = :viewer_id) AND recent.title_folded LIKE :pattern ESCAPE '/' ORDER BY recent.created_at DESC, recent.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- RECENT_SEARCH[True] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, before_id, pattern, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT recent.id AS id, recent.title AS title, recent.content AS content, recent.published AS published, recent.created_at AS created_at, recent.owner_id AS owner_id
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts
WHERE (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = $2::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $2) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 500) AS recent
WHERE (recent.published OR recent.owner_id = $1::INTEGER) AND recent.title_folded LIKE $3::VARCHAR ESCAPE '/' ORDER BY recent.created_at DESC, recent.id DESC
 LIMIT $4 OFFSET $5) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $6::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $7::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT recent.id AS id, recent.title AS title, recent.content AS content, recent.published AS published, recent.created_at AS created_at, recent.owner_id AS owner_id
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts
WHERE (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = :before_id AND (cursor.published = 1 OR cursor.owner_id = :viewer_id)), :before_id) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 500 OFFSET :param_1) AS recent
WHERE (recent.published = 1 OR recent.owner_id = :viewer_id) AND recent.title_folded LIKE :pattern ESCAPE '/' ORDER BY recent.created_at DESC, recent.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- GRAM_FREQUENCIES
-- parameters: none
-- PostgreSQL:
SELECT most_common_elems::text::integer[] AS grams, most_common_elem_freqs AS frequencies, (SELECT reltuples FROM pg_class WHERE relname = 'posts') AS posts FROM pg_stats WHERE tablename = 'posts' AND attname = 'title_grams';
-- SQLite:
SELECT most_common_elems::text::integer[] AS grams, most_common_elem_freqs AS frequencies, (SELECT reltuples FROM pg_class WHERE relname = 'posts') AS posts FROM pg_stats WHERE tablename = 'posts' AND attname = 'title_grams';

-- GRAMS_SEARCH[False] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, grams, pattern, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
WITH candidates AS MATERIALIZED
(SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts
WHERE (posts.title_grams @> (SELECT $2::INTEGER[] AS anon_1)) AND (posts.published OR posts.owner_id = $1::INTEGER))
 SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT candidates.id AS id, candidates.title AS title, candidates.content AS content, candidates.published AS published, candidates.created_at AS created_at, candidates.owner_id AS owner_id
FROM candidates
WHERE candidates.title_folded LIKE (SELECT $3::VARCHAR AS anon_2) ESCAPE '/' ORDER BY candidates.created_at DESC, candidates.id DESC
 LIMIT (SELECT $4::INTEGER AS anon_3) OFFSET (SELECT $5::INTEGER AS anon_4)) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $6::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $7::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
WITH candidates AS MATERIALIZED
(SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts
WHERE (posts.title_grams @> (SELECT :grams AS anon_1)) AND (posts.published = 1 OR posts.owner_id = :viewer_id))
 SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT candidates.id AS id, candidates.title AS title, candidates.content AS content, candidates.published AS published, candidates.created_at AS created_at, candidates.owner_id AS owner_id
FROM candidates
WHERE candidates.title_folded LIKE (SELECT :pattern AS anon_2) ESCAPE '/' ORDER BY candidates.created_at DESC, candidates.id DESC
 LIMIT (SELECT :limit AS anon_3) OFFSET (SELECT :skip AS anon_4)) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- GRAMS_SEARCH[True] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, grams, before_id, pattern, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
WITH candidates AS MATERIALIZED
(SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts
WHERE (posts.title_grams @> (SELECT $2::INTEGER[] AS anon_1)) AND (posts.published OR posts.owner_id = $1::INTEGER) AND (SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = $3::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)) IS NOT NULL AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = $3::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $3))
 SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT candidates.id AS id, candidates.title AS title, candidates.content AS content, candidates.published AS published, candidates.created_at AS created_at, candidates.owner_id AS owner_id
FROM candidates
WHERE candidates.title_folded LIKE (SELECT $4::VARCHAR AS anon_2) ESCAPE '/' ORDER BY candidates.created_at DESC, candidates.id DESC
 LIMIT (SELECT $5::INTEGER AS anon_3) OFFSET (SELECT $6::INTEGER AS anon_4)) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $7::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $8::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
WITH candidates AS MATERIALIZED
(SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id, posts.title_folded AS title_folded
FROM posts
WHERE (posts.title_grams @> (SELECT :grams AS anon_1)) AND (posts.published = 1 OR posts.owner_id = :viewer_id) AND (SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = :before_id AND (cursor.published = 1 OR cursor.owner_id = :viewer_id)) IS NOT NULL AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = :before_id AND (cursor.published = 1 OR cursor.owner_id = :viewer_id)), :before_id))
 SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT candidates.id AS id, candidates.title AS title, candidates.content AS content, candidates.published AS published, candidates.created_at AS created_at, candidates.owner_id AS owner_id
FROM candidates
WHERE candidates.title_folded LIKE (SELECT :pattern AS anon_2) ESCAPE '/' ORDER BY candidates.created_at DESC, candidates.id DESC
 LIMIT (SELECT :limit AS anon_3) OFFSET (SELECT :skip AS anon_4)) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- GRAMS_WALK[False] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, quiet_sample, pattern, second_rate, scan, walk_grams, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (
        WITH RECURSIVE steps(newest, lower, element, quiet, depth) AS (
            SELECT step.newest, step.lower, step.element, step.quiet, 1
            FROM (SELECT (SELECT max(created_at) FROM posts) AS newest OFFSET 0) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT $2::INTEGER)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT $3::VARCHAR) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT $4::INTEGER) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT $4::INTEGER), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT step.newest, step.lower, step.element, step.quiet, steps.depth + 1
            FROM steps
            CROSS JOIN LATERAL (
                SELECT max(older.created_at) AS newest FROM posts AS older WHERE older.created_at < steps.lower
            ) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT $2::INTEGER)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT $3::VARCHAR) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT $4::INTEGER) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT $4::INTEGER), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL AND steps.depth < 32
        )
        SELECT found.* FROM steps
        CROSS JOIN LATERAL (SELECT (SELECT $5::INTEGER) > 0 AND NOT steps.quiet AS scans OFFSET 0) AS scan
        LEFT JOIN LATERAL (
            SELECT last.created_at, last.id FROM posts AS last WHERE scan.scans AND last.created_at >= steps.lower AND last.created_at <= steps.newest  ORDER BY last.created_at DESC, last.id DESC OFFSET greatest((SELECT $5::INTEGER) - 1, 0) LIMIT 1
        ) AS scanned_to ON true
        CROSS JOIN LATERAL (
            (
                SELECT scanned.id, scanned.title, scanned.content, scanned.published, scanned.created_at, scanned.owner_id FROM (
                    SELECT newest.id, newest.title, newest.content, newest.published, newest.created_at, newest.owner_id, newest.title_folded
                    FROM posts AS newest WHERE scan.scans AND newest.created_at >= steps.lower AND newest.created_at <= steps.newest  ORDER BY newest.created_at DESC, newest.id DESC LIMIT (SELECT $5::INTEGER)
                ) AS scanned
                WHERE scanned.title_folded LIKE (SELECT $3::VARCHAR) ESCAPE '/'
                  AND (scanned.published OR scanned.owner_id = $1::INTEGER)
            )
            UNION ALL
            (
                SELECT candidates.id, candidates.title, candidates.content, candidates.published, candidates.created_at, candidates.owner_id FROM (
                    SELECT id, title, content, published, created_at, owner_id, title_folded FROM posts
                    WHERE title_grams @> ARRAY[steps.element]
                      AND title_grams @> CASE WHEN steps.quiet THEN (SELECT $6::INTEGER[]) ELSE ((SELECT $6::INTEGER[]))[1:1] END
                      AND (published OR owner_id = $1::INTEGER)
                    OFFSET 0
                ) AS candidates
                WHERE candidates.title_folded LIKE (SELECT $3::VARCHAR) ESCAPE '/'
                  AND candidates.created_at >= steps.lower AND candidates.created_at <= steps.newest

                  AND (NOT scan.scans
                       OR (candidates.created_at, candidates.id) < (scanned_to.created_at, scanned_to.id))
                ORDER BY candidates.created_at DESC, candidates.id DESC
                LIMIT (SELECT $7::INTEGER + $8::INTEGER)
            )
            LIMIT (SELECT $7::INTEGER + $8::INTEGER)
        ) AS found
        LIMIT (SELECT $7::INTEGER) OFFSET (SELECT $8::INTEGER)
        ) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $9::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $10::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (
        WITH RECURSIVE steps(newest, lower, element, quiet, depth) AS (
            SELECT step.newest, step.lower, step.element, step.quiet, 1
            FROM (SELECT (SELECT max(created_at) FROM posts) AS newest OFFSET 0) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT :quiet_sample)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT :pattern) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT :second_rate) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT :second_rate), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT step.newest, step.lower, step.element, step.quiet, steps.depth + 1
            FROM steps
            CROSS JOIN LATERAL (
                SELECT max(older.created_at) AS newest FROM posts AS older WHERE older.created_at < steps.lower
            ) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT :quiet_sample)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT :pattern) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT :second_rate) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT :second_rate), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL AND steps.depth < 32
        )
        SELECT found.* FROM steps
        CROSS JOIN LATERAL (SELECT (SELECT :scan) > 0 AND NOT steps.quiet AS scans OFFSET 0) AS scan
        LEFT JOIN LATERAL (
            SELECT last.created_at, last.id FROM posts AS last WHERE scan.scans AND last.created_at >= steps.lower AND last.created_at <= steps.newest  ORDER BY last.created_at DESC, last.id DESC OFFSET greatest((SELECT :scan) - 1, 0) LIMIT 1
        ) AS scanned_to ON true
        CROSS JOIN LATERAL (
            (
                SELECT scanned.id, scanned.title, scanned.content, scanned.published, scanned.created_at, scanned.owner_id FROM (
                    SELECT newest.id, newest.title, newest.content, newest.published, newest.created_at, newest.owner_id, newest.title_folded
                    FROM posts AS newest WHERE scan.scans AND newest.created_at >= steps.lower AND newest.created_at <= steps.newest  ORDER BY newest.created_at DESC, newest.id DESC LIMIT (SELECT :scan)
                ) AS scanned
                WHERE scanned.title_folded LIKE (SELECT :pattern) ESCAPE '/'
                  AND (scanned.published OR scanned.owner_id = :viewer_id)
            )
            UNION ALL
            (
                SELECT candidates.id, candidates.title, candidates.content, candidates.published, candidates.created_at, candidates.owner_id FROM (
                    SELECT id, title, content, published, created_at, owner_id, title_folded FROM posts
                    WHERE title_grams @> ARRAY[steps.element]
                      AND title_grams @> CASE WHEN steps.quiet THEN (SELECT :walk_grams) ELSE ((SELECT :walk_grams))[1:1] END
                      AND (published OR owner_id = :viewer_id)
                    OFFSET 0
                ) AS candidates
                WHERE candidates.title_folded LIKE (SELECT :pattern) ESCAPE '/'
                  AND candidates.created_at >= steps.lower AND candidates.created_at <= steps.newest

                  AND (NOT scan.scans
                       OR (candidates.created_at, candidates.id) < (scanned_to.created_at, scanned_to.id))
                ORDER BY candidates.created_at DESC, candidates.id DESC
                LIMIT (SELECT :limit + :skip)
            )
            LIMIT (SELECT :limit + :skip)
        ) AS found
        LIMIT (SELECT :limit) OFFSET (SELECT :skip)
        ) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- GRAMS_WALK[True] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, before_id, quiet_sample, pattern, second_rate, scan, walk_grams, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (
        WITH RECURSIVE steps(newest, lower, element, quiet, depth) AS (
            SELECT step.newest, step.lower, step.element, step.quiet, 1
            FROM (SELECT (SELECT created_at FROM posts WHERE id = $2::INTEGER) AS newest OFFSET 0) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT $3::INTEGER)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT $4::VARCHAR) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT $5::INTEGER) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT $5::INTEGER), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT step.newest, step.lower, step.element, step.quiet, steps.depth + 1
            FROM steps
            CROSS JOIN LATERAL (
                SELECT max(older.created_at) AS newest FROM posts AS older WHERE older.created_at < steps.lower
            ) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT $3::INTEGER)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT $4::VARCHAR) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT $5::INTEGER) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT $5::INTEGER), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL AND steps.depth < 32
        )
        SELECT found.* FROM steps
        CROSS JOIN LATERAL (SELECT (SELECT $6::INTEGER) > 0 AND NOT steps.quiet AS scans OFFSET 0) AS scan
        LEFT JOIN LATERAL (
            SELECT last.created_at, last.id FROM posts AS last WHERE scan.scans AND last.created_at >= steps.lower AND last.created_at <= steps.newest AND (last.created_at, last.id) < ((SELECT cursor.created_at FROM posts AS cursor WHERE cursor.id = $2::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $2::INTEGER) ORDER BY last.created_at DESC, last.id DESC OFFSET greatest((SELECT $6::INTEGER) - 1, 0) LIMIT 1
        ) AS scanned_to ON true
        CROSS JOIN LATERAL (
            (
                SELECT scanned.id, scanned.title, scanned.content, scanned.published, scanned.created_at, scanned.owner_id FROM (
                    SELECT newest.id, newest.title, newest.content, newest.published, newest.created_at, newest.owner_id, newest.title_folded
                    FROM posts AS newest WHERE scan.scans AND newest.created_at >= steps.lower AND newest.created_at <= steps.newest AND (newest.created_at, newest.id) < ((SELECT cursor.created_at FROM posts AS cursor WHERE cursor.id = $2::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $2::INTEGER) ORDER BY newest.created_at DESC, newest.id DESC LIMIT (SELECT $6::INTEGER)
                ) AS scanned
                WHERE scanned.title_folded LIKE (SELECT $4::VARCHAR) ESCAPE '/'
                  AND (scanned.published OR scanned.owner_id = $1::INTEGER)
            )
            UNION ALL
            (
                SELECT candidates.id, candidates.title, candidates.content, candidates.published, candidates.created_at, candidates.owner_id FROM (
                    SELECT id, title, content, published, created_at, owner_id, title_folded FROM posts
                    WHERE title_grams @> ARRAY[steps.element]
                      AND title_grams @> CASE WHEN steps.quiet THEN (SELECT $7::INTEGER[]) ELSE ((SELECT $7::INTEGER[]))[1:1] END
                      AND (published OR owner_id = $1::INTEGER)
                    OFFSET 0
                ) AS candidates
                WHERE candidates.title_folded LIKE (SELECT $4::VARCHAR) ESCAPE '/'
                  AND candidates.created_at >= steps.lower AND candidates.created_at <= steps.newest
                  AND (candidates.created_at, candidates.id) < ((SELECT cursor.created_at FROM posts AS cursor WHERE cursor.id = $2::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $2::INTEGER)
                  AND (NOT scan.scans
                       OR (candidates.created_at, candidates.id) < (scanned_to.created_at, scanned_to.id))
                ORDER BY candidates.created_at DESC, candidates.id DESC
                LIMIT (SELECT $8::INTEGER + $9::INTEGER)
            )
            LIMIT (SELECT $8::INTEGER + $9::INTEGER)
        ) AS found
        LIMIT (SELECT $8::INTEGER) OFFSET (SELECT $9::INTEGER)
        ) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $10::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $11::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (
        WITH RECURSIVE steps(newest, lower, element, quiet, depth) AS (
            SELECT step.newest, step.lower, step.element, step.quiet, 1
            FROM (SELECT (SELECT created_at FROM posts WHERE id = :before_id) AS newest OFFSET 0) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT :quiet_sample)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT :pattern) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT :second_rate) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT :second_rate), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT step.newest, step.lower, step.element, step.quiet, steps.depth + 1
            FROM steps
            CROSS JOIN LATERAL (
                SELECT max(older.created_at) AS newest FROM posts AS older WHERE older.created_at < steps.lower
            ) AS head
            CROSS JOIN LATERAL (
        SELECT head.newest AS newest,
               CASE density.level WHEN 0 THEN to_timestamp(bucket.coarse * 4096)
                                  WHEN 1 THEN to_timestamp(bucket.fine * 16)
                                  ELSE to_timestamp(bucket.second) END AS lower,
               CAST(CASE density.level WHEN 0 THEN -1 - 2 * bucket.coarse
                                       WHEN 1 THEN -2 - 2 * bucket.fine
                                       ELSE CAST(-1073741824 - mod(CAST(bucket.second AS BIGINT), 1073741824) AS INTEGER) END AS INTEGER) AS element,
               look.quiet
        FROM (
            SELECT floor(extract(epoch FROM head.newest) / 4096) AS coarse,
                   floor(extract(epoch FROM head.newest) / 16) AS fine,
                   floor(extract(epoch FROM head.newest)) AS second
        ) AS bucket
        CROSS JOIN LATERAL (
            SELECT NOT EXISTS (
                SELECT FROM (
                    SELECT sample.title_folded FROM posts AS sample WHERE sample.created_at <= head.newest
                    ORDER BY sample.created_at DESC, sample.id DESC LIMIT (SELECT :quiet_sample)
                ) AS sample
                WHERE sample.title_folded LIKE (SELECT :pattern) ESCAPE '/'
            ) AS quiet
            OFFSET 0
        ) AS look
        CROSS JOIN LATERAL (SELECT ((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp((bucket.coarse + 1) * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1) - coalesce((SELECT earlier.id FROM posts AS earlier WHERE earlier.created_at < to_timestamp(bucket.coarse * 4096) ORDER BY earlier.created_at DESC, earlier.id DESC LIMIT 1), 0)) AS posts OFFSET 0) AS bucket_posts
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN bucket_posts.posts <= 4096 OR (look.quiet AND bucket_posts.posts <= 32768)
                    THEN 0
                WHEN NOT look.quiet AND (SELECT :second_rate) > 0
                     AND to_timestamp(bucket.second) >= agora_second_buckets_since() AND (SELECT rate.created_at FROM posts AS rate WHERE rate.created_at <= head.newest ORDER BY rate.created_at DESC, rate.id DESC OFFSET 63 LIMIT 1) > head.newest - make_interval(secs => 64.0 / nullif((SELECT :second_rate), 0))
                    THEN 2
                ELSE 1
            END AS level
            OFFSET 0
        ) AS density
    ) AS step
            WHERE head.newest IS NOT NULL AND steps.depth < 32
        )
        SELECT found.* FROM steps
        CROSS JOIN LATERAL (SELECT (SELECT :scan) > 0 AND NOT steps.quiet AS scans OFFSET 0) AS scan
        LEFT JOIN LATERAL (
            SELECT last.created_at, last.id FROM posts AS last WHERE scan.scans AND last.created_at >= steps.lower AND last.created_at <= steps.newest AND (last.created_at, last.id) < ((SELECT cursor.created_at FROM posts AS cursor WHERE cursor.id = :before_id AND (cursor.published OR cursor.owner_id = :viewer_id)), :before_id) ORDER BY last.created_at DESC, last.id DESC OFFSET greatest((SELECT :scan) - 1, 0) LIMIT 1
        ) AS scanned_to ON true
        CROSS JOIN LATERAL (
            (
                SELECT scanned.id, scanned.title, scanned.content, scanned.published, scanned.created_at, scanned.owner_id FROM (
                    SELECT newest.id, newest.title, newest.content, newest.published, newest.created_at, newest.owner_id, newest.title_folded
                    FROM posts AS newest WHERE scan.scans AND newest.created_at >= steps.lower AND newest.created_at <= steps.newest AND (newest.created_at, newest.id) < ((SELECT cursor.created_at FROM posts AS cursor WHERE cursor.id = :before_id AND (cursor.published OR cursor.owner_id = :viewer_id)), :before_id) ORDER BY newest.created_at DESC, newest.id DESC LIMIT (SELECT :scan)
                ) AS scanned
                WHERE scanned.title_folded LIKE (SELECT :pattern) ESCAPE '/'
                  AND (scanned.published OR scanned.owner_id = :viewer_id)
            )
            UNION ALL
            (
                SELECT candidates.id, candidates.title, candidates.content, candidates.published, candidates.created_at, candidates.owner_id FROM (
                    SELECT id, title, content, published, created_at, owner_id, title_folded FROM posts
                    WHERE title_grams @> ARRAY[steps.element]
                      AND title_grams @> CASE WHEN steps.quiet THEN (SELECT :walk_grams) ELSE ((SELECT :walk_grams))[1:1] END
                      AND (published OR owner_id = :viewer_id)
                    OFFSET 0
                ) AS candidates
                WHERE candidates.title_folded LIKE (SELECT :pattern) ESCAPE '/'
                  AND candidates.created_at >= steps.lower AND candidates.created_at <= steps.newest
                  AND (candidates.created_at, candidates.id) < ((SELECT cursor.created_at FROM posts AS cursor WHERE cursor.id = :before_id AND (cursor.published OR cursor.owner_id = :viewer_id)), :before_id)
                  AND (NOT scan.scans
                       OR (candidates.created_at, candidates.id) < (scanned_to.created_at, scanned_to.id))
                ORDER BY candidates.created_at DESC, candidates.id DESC
                LIMIT (SELECT :limit + :skip)
            )
            LIMIT (SELECT :limit + :skip)
        ) AS found
        LIMIT (SELECT :limit) OFFSET (SELECT :skip)
        ) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- FEED_BUCKETS
-- parameters: none
-- PostgreSQL:
SELECT feed.buckets, feed.posts FROM (
        WITH RECURSIVE buckets(lower, depth) AS (
            SELECT to_timestamp(floor(extract(epoch FROM head.newest) / 4096) * 4096), 1
            FROM (SELECT max(created_at) AS newest FROM posts) AS head
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT to_timestamp(floor(extract(epoch FROM head.newest) / 4096) * 4096),
                   buckets.depth + 1
            FROM buckets
            CROSS JOIN LATERAL (SELECT max(created_at) AS newest FROM posts WHERE created_at < buckets.lower) AS head
            WHERE head.newest IS NOT NULL AND buckets.depth < 32
        )
        SELECT (SELECT count(*) FROM buckets) AS buckets,
               (SELECT id FROM posts ORDER BY created_at DESC, id DESC LIMIT 1)
               - coalesce((SELECT id FROM posts WHERE created_at < (SELECT min(lower) FROM buckets)
                           ORDER BY created_at DESC, id DESC LIMIT 1), 0) AS posts
        ) AS feed;
-- SQLite:
SELECT feed.buckets, feed.posts FROM (
        WITH RECURSIVE buckets(lower, depth) AS (
            SELECT to_timestamp(floor(extract(epoch FROM head.newest) / 4096) * 4096), 1
            FROM (SELECT max(created_at) AS newest FROM posts) AS head
            WHERE head.newest IS NOT NULL
            UNION ALL
            SELECT to_timestamp(floor(extract(epoch FROM head.newest) / 4096) * 4096),
                   buckets.depth + 1
            FROM buckets
            CROSS JOIN LATERAL (SELECT max(created_at) AS newest FROM posts WHERE created_at < buckets.lower) AS head
            WHERE head.newest IS NOT NULL AND buckets.depth < 32
        )
        SELECT (SELECT count(*) FROM buckets) AS buckets,
               (SELECT id FROM posts ORDER BY created_at DESC, id DESC LIMIT 1)
               - coalesce((SELECT id FROM posts WHERE created_at < (SELECT min(lower) FROM buckets)
                           ORDER BY created_at DESC, id DESC LIMIT 1), 0) AS posts
        ) AS feed;

-- OWNER_POSTS[False, False] (proves the viewer's account)
-- parameters: viewer_id, owner_id, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published OR posts.owner_id = $1::INTEGER) AND posts.owner_id = $2::INTEGER ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $3 OFFSET $4) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $5::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $6::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published = 1 OR posts.owner_id = :viewer_id) AND posts.owner_id = :owner_id ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- OWNER_POSTS[False, True] (proves the viewer's account)
-- parameters: viewer_id, owner_id, before_id, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published OR posts.owner_id = $1::INTEGER) AND posts.owner_id = $2::INTEGER AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = $3::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $3) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $4 OFFSET $5) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $6::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $7::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published = 1 OR posts.owner_id = :viewer_id) AND posts.owner_id = :owner_id AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = :before_id AND (cursor.published = 1 OR cursor.owner_id = :viewer_id)), :before_id) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- OWNER_POSTS[True, False] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, owner_id, pattern, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published OR posts.owner_id = $1::INTEGER) AND posts.owner_id = $2::INTEGER AND posts.title_folded LIKE $3::VARCHAR ESCAPE '/' ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $4 OFFSET $5) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $6::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $7::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published = 1 OR posts.owner_id = :viewer_id) AND posts.owner_id = :owner_id AND posts.title_folded LIKE :pattern ESCAPE '/' ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- OWNER_POSTS[True, True] (proves the viewer's account) (a search: stopped after SEARCH_TIMEOUT_MS)
-- parameters: viewer_id, owner_id, pattern, before_id, limit, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published OR posts.owner_id = $1::INTEGER) AND posts.owner_id = $2::INTEGER AND posts.title_folded LIKE $3::VARCHAR ESCAPE '/' AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = $4::INTEGER AND (cursor.published OR cursor.owner_id = $1::INTEGER)), $4) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT $5 OFFSET $6) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $7::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $8::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE (posts.published = 1 OR posts.owner_id = :viewer_id) AND posts.owner_id = :owner_id AND posts.title_folded LIKE :pattern ESCAPE '/' AND (posts.created_at, posts.id) < ((SELECT cursor.created_at
FROM posts AS cursor
WHERE cursor.id = :before_id AND (cursor.published = 1 OR cursor.owner_id = :viewer_id)), :before_id) ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT :limit OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- FIRST_PAGE_OF_10 (proves the viewer's account)
-- parameters: viewer_id, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.published OR posts.owner_id = $1::INTEGER ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 10) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $2::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $3::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.published = 1 OR posts.owner_id = :viewer_id ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 10 OFFSET :param_1) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- PAGE_OF_10_WITHIN_32 (proves the viewer's account)
-- parameters: viewer_id, skip, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT reachable.id AS id, reachable.title AS title, reachable.content AS content, reachable.published AS published, reachable.created_at AS created_at, reachable.owner_id AS owner_id
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.published OR posts.owner_id = $1::INTEGER ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 32) AS reachable ORDER BY reachable.created_at DESC, reachable.id DESC
 LIMIT 10 OFFSET $2) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $3::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $4::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT reachable.id AS id, reachable.title AS title, reachable.content AS content, reachable.published AS published, reachable.created_at AS created_at, reachable.owner_id AS owner_id
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.published = 1 OR posts.owner_id = :viewer_id ORDER BY posts.created_at DESC, posts.id DESC
 LIMIT 32 OFFSET :param_1) AS reachable ORDER BY reachable.created_at DESC, reachable.id DESC
 LIMIT 10 OFFSET :skip) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- POST_DETAIL (proves the viewer's account)
-- parameters: viewer_id, post_id, viewer_generation, viewer_jti
-- PostgreSQL:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = $1::INTEGER AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.id = $2::INTEGER AND (posts.published OR posts.owner_id = $1::INTEGER)) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $3::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $4::VARCHAR))) ORDER BY page.created_at DESC, page.id DESC;
-- SQLite:
SELECT page.id, page.title, page.content, page.published, page.created_at, page.owner_id, users.email AS owner_email, users.created_at AS owner_created_at, (SELECT count(*) AS count_1
FROM votes
WHERE votes.post_id = page.id) AS votes, (SELECT 1
FROM votes
WHERE votes.user_id = :viewer_id AND votes.post_id = page.id) IS NOT NULL AS voted
FROM (SELECT posts.id AS id, posts.title AS title, posts.content AS content, posts.published AS published, posts.created_at AS created_at, posts.owner_id AS owner_id
FROM posts
WHERE posts.id = :post_id AND (posts.published = 1 OR posts.owner_id = :viewer_id)) AS page JOIN users ON users.id = page.owner_id
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) ORDER BY page.created_at DESC, page.id DESC;

-- POST_OWNERSHIP
-- parameters: post_id
-- PostgreSQL:
SELECT posts.id, posts.owner_id, posts.published
FROM posts
WHERE posts.id = $1::INTEGER;
-- SQLite:
SELECT posts.id, posts.owner_id, posts.published
FROM posts
WHERE posts.id = :post_id;

-- CREATE_POST (proves the viewer's account)
-- parameters: viewer_id, title, title_folded, content, published, title_grams, viewer_generation, viewer_jti
-- PostgreSQL:
INSERT INTO posts (title, title_folded, content, published, owner_id, title_grams) SELECT $2::VARCHAR AS anon_1, $3::VARCHAR AS anon_2, $4::VARCHAR AS anon_3, $5::BOOLEAN AS anon_4, users.id, $6::INTEGER[] || ARRAY[CAST(-1 - 2 * floor(extract(epoch FROM now()) / 4096) AS INTEGER), CAST(-2 - 2 * floor(extract(epoch FROM now()) / 16) AS INTEGER)] AS anon_5
FROM users
WHERE users.id = $1::INTEGER AND users.token_generation = $7::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $8::VARCHAR)) RETURNING posts.id, posts.title, posts.content, posts.published, posts.created_at, posts.owner_id, (SELECT owner.email
FROM users AS owner
WHERE owner.id = $1::INTEGER) AS owner_email, (SELECT owner.created_at
FROM users AS owner
WHERE owner.id = $1::INTEGER) AS owner_created_at;
-- SQLite:
INSERT INTO posts (title, title_folded, content, published, owner_id) SELECT :title AS anon_1, :title_folded AS anon_2, :content AS anon_3, :published AS anon_4, users.id
FROM users
WHERE users.id = :viewer_id AND users.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti)) RETURNING id, title, content, published, created_at, owner_id, (SELECT owner.email
FROM users AS owner
WHERE id = :viewer_id) AS owner_email, (SELECT owner.created_at
FROM users AS owner
WHERE id = :viewer_id) AS owner_created_at;

-- UPDATE_POST
-- parameters: title, title_folded, title_grams, content, published, post_id
-- PostgreSQL:
UPDATE posts SET title=coalesce($1::VARCHAR, posts.title), title_folded=coalesce($2::VARCHAR, posts.title_folded), title_grams=CASE WHEN ($3::INTEGER[] IS NULL) THEN posts.title_grams ELSE $3::INTEGER[] || ARRAY[CAST(-1 - 2 * floor(extract(epoch FROM posts.created_at) / 4096) AS INTEGER), CAST(-2 - 2 * floor(extract(epoch FROM posts.created_at) / 16) AS INTEGER)] END, content=coalesce($4::VARCHAR, posts.content), published=coalesce($5::BOOLEAN, posts.published) WHERE posts.id = $6::INTEGER RETURNING posts.id, posts.title, posts.content, posts.published, posts.created_at, posts.owner_id;
-- SQLite:
UPDATE posts SET title=coalesce(:title, posts.title), title_folded=coalesce(:title_folded, posts.title_folded), content=coalesce(:content, posts.content), published=coalesce(:published, posts.published) WHERE posts.id = :post_id RETURNING id, title, content, published, created_at, owner_id;

-- UNFOLDED_TITLES
-- parameters: none
-- PostgreSQL:
SELECT posts.id, posts.title
FROM posts
WHERE posts.title_folded IS NULL ORDER BY posts.id
 LIMIT 500;
-- SQLite:
SELECT posts.id, posts.title
FROM posts
WHERE posts.title_folded IS NULL ORDER BY posts.id
 LIMIT 500 OFFSET :param_1;

-- FOLD_TITLE
-- parameters: title_folded, post_id, read_title
-- PostgreSQL:
UPDATE posts SET title_folded=$1::VARCHAR WHERE posts.id = $2::INTEGER AND posts.title = $3::VARCHAR;
-- SQLite:
UPDATE posts SET title_folded=:title_folded WHERE posts.id = :post_id AND posts.title = :read_title;

-- UNGRAMMED_TITLES
-- parameters: none
-- PostgreSQL:
SELECT posts.id, posts.title
FROM posts
WHERE posts.title_grams IS NULL ORDER BY posts.id
 LIMIT 500;
-- SQLite:
SELECT posts.id, posts.title
FROM posts
WHERE posts.title_grams IS NULL ORDER BY posts.id
 LIMIT 500 OFFSET :param_1;

-- FILL_TITLE_GRAMS
-- parameters: post_ids, read_titles, folded, grams
-- PostgreSQL:
UPDATE posts SET title_folded = filled.folded, title_grams = CAST(filled.grams AS INTEGER[]) || ARRAY[CAST(-1 - 2 * floor(extract(epoch FROM posts.created_at) / 4096) AS INTEGER), CAST(-2 - 2 * floor(extract(epoch FROM posts.created_at) / 16) AS INTEGER)] FROM unnest(CAST($1 AS INTEGER[]), CAST($2 AS VARCHAR[]), CAST($3 AS VARCHAR[]), CAST($4 AS VARCHAR[])) AS filled(id, title, folded, grams) WHERE posts.id = filled.id AND posts.title = filled.title;
-- SQLite:
UPDATE posts SET title_folded = filled.folded, title_grams = CAST(filled.grams AS INTEGER[]) || ARRAY[CAST(-1 - 2 * floor(extract(epoch FROM posts.created_at) / 4096) AS INTEGER), CAST(-2 - 2 * floor(extract(epoch FROM posts.created_at) / 16) AS INTEGER)] FROM unnest(CAST(:post_ids AS INTEGER[]), CAST(:read_titles AS VARCHAR[]), CAST(:folded AS VARCHAR[]), CAST(:grams AS VARCHAR[])) AS filled(id, title, folded, grams) WHERE posts.id = filled.id AND posts.title = filled.title;

-- DELETE_POST
-- parameters: post_id
-- PostgreSQL:
DELETE FROM posts WHERE posts.id = $1::INTEGER RETURNING posts.id;
-- SQLite:
DELETE FROM posts WHERE posts.id = :post_id RETURNING id;

-- ADD_VOTE (proves the viewer's account)
-- parameters: viewer_id, post_id, viewer_generation, viewer_jti
-- PostgreSQL:
INSERT INTO votes (user_id, post_id) SELECT $1::INTEGER AS anon_1, posts.id
FROM posts
WHERE posts.id = $2::INTEGER AND (posts.published OR posts.owner_id = $1::INTEGER) AND (EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $3::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $4::VARCHAR)))) ON CONFLICT DO NOTHING RETURNING votes.post_id;
-- SQLite:
INSERT INTO votes (user_id, post_id) SELECT :viewer_id AS anon_1, posts.id
FROM posts
WHERE posts.id = :post_id AND (posts.published = 1 OR posts.owner_id = :viewer_id) AND (EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti)))) ON CONFLICT DO NOTHING RETURNING post_id;

-- REMOVE_VOTE (proves the viewer's account)
-- parameters: viewer_id, post_id, viewer_generation, viewer_jti
-- PostgreSQL:
DELETE FROM votes WHERE votes.user_id = $1::INTEGER AND votes.post_id = $2::INTEGER AND (EXISTS (SELECT $1::INTEGER AS anon_1, posts.id
FROM posts
WHERE posts.id = $2::INTEGER AND (posts.published OR posts.owner_id = $1::INTEGER) AND (EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $1::INTEGER AND viewer.token_generation = $3::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $4::VARCHAR)))))) RETURNING votes.post_id;
-- SQLite:
DELETE FROM votes WHERE votes.user_id = :viewer_id AND votes.post_id = :post_id AND (EXISTS (SELECT :viewer_id AS anon_1, posts.id
FROM posts
WHERE posts.id = :post_id AND (posts.published = 1 OR posts.owner_id = :viewer_id) AND (EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti)))))) RETURNING post_id;

-- REVOKE_TOKEN (proves the viewer's account)
-- parameters: viewer_jti, expires_at, viewer_id, viewer_generation
-- PostgreSQL:
INSERT INTO revoked_tokens (jti, expires_at) SELECT $1::VARCHAR AS anon_1, $2::BIGINT AS anon_2
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = $3::INTEGER AND viewer.token_generation = $4::INTEGER AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = $1::VARCHAR))) RETURNING revoked_tokens.jti;
-- SQLite:
INSERT INTO revoked_tokens (jti, expires_at) SELECT :viewer_jti AS anon_1, :expires_at AS anon_2
WHERE EXISTS (SELECT *
FROM users AS viewer
WHERE viewer.id = :viewer_id AND viewer.token_generation = :viewer_generation AND NOT (EXISTS (SELECT *
FROM revoked_tokens
WHERE revoked_tokens.jti = :viewer_jti))) RETURNING jti;

-- PURGE_REVOKED_TOKENS
-- parameters: now
-- PostgreSQL:
DELETE FROM revoked_tokens WHERE revoked_tokens.jti IN (SELECT revoked_tokens.jti
FROM revoked_tokens
WHERE revoked_tokens.expires_at < $1::BIGINT ORDER BY revoked_tokens.expires_at
 LIMIT 100);
-- SQLite:
DELETE FROM revoked_tokens WHERE revoked_tokens.jti IN (SELECT revoked_tokens.jti
FROM revoked_tokens
WHERE revoked_tokens.expires_at < :now ORDER BY revoked_tokens.expires_at
 LIMIT 100 OFFSET :param_1);

-- ALEMBIC_TABLE_EXISTS[postgresql]
-- parameters: none
-- PostgreSQL:
SELECT to_regclass('alembic_version') IS NOT NULL AS present;
-- SQLite:
SELECT to_regclass('alembic_version') IS NOT NULL AS present;

-- ALEMBIC_TABLE_EXISTS[sqlite]
-- parameters: none
-- PostgreSQL:
SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version') AS present;
-- SQLite:
SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version') AS present;

-- SCHEMA_REVISIONS
-- parameters: none
-- PostgreSQL:
SELECT version_num FROM alembic_version;
-- SQLite:
SELECT version_num FROM alembic_version;
