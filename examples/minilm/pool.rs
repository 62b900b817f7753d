//! sentence-transformers' head for all-MiniLM-L6-v2 (`modules.json`: mean
//! pooling, then `Normalize`), with the ops its modules run, so that the
//! Python reference computes the same bits.

use anyhow::Result;
use tch::{Kind, Tensor};

/// `Pooling(pooling_mode_mean_tokens=True)`: the mean of the token
/// embeddings `[batch, seq, hidden]` over the tokens the 0/1 mask
/// `[batch, seq]` keeps, then `F.normalize(p=2, dim=1)`.
pub fn sentence_embeddings(token_embeddings: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let mask = attention_mask
        .f_unsqueeze(-1)?
        .f_expand_as(token_embeddings)?
        .f_to_kind(token_embeddings.kind())?;
    let summed = (token_embeddings * &mask).f_sum_dim_intlist(1, false, None::<Kind>)?;
    let counts = mask
        .f_sum_dim_intlist(1, false, None::<Kind>)?
        .f_clamp_min(1e-9)?;
    let mean = summed / counts;
    // aten::norm.ScalarOpt_dim runs linalg_vector_norm's kernel, which
    // F.normalize calls (tch 0.26 has no linalg_vector_norm binding).
    let norm = mean
        .f_norm_scalaropt_dim(2.0, 1, true)?
        .f_clamp_min(1e-12)?
        .f_expand_as(&mean)?;
    Ok(mean / norm)
}

/// Row-wise dot products of two batches of unit vectors `[n, hidden]`: the
/// cosine of each sentence's embedding in one model and in the other.
pub fn paired_cosines(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    let dots = (a * b).f_sum_dim_intlist(1, false, Kind::Double)?;
    Ok(Vec::<f64>::try_from(&dots)?)
}

/// All pairwise cosines `[n, n]` of one batch of unit vectors.
pub fn similarity_matrix(embeddings: &Tensor) -> Result<Vec<Vec<f64>>> {
    let e = embeddings.f_to_kind(Kind::Double)?;
    let sims = e.f_matmul(&e.f_transpose(0, 1)?)?;
    Ok(Vec::<Vec<f64>>::try_from(&sims)?)
}
