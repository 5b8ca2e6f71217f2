import numpy as np
import pytest

from explain.users import UserTable, UserTableError, save_user_table


def test_unknown_users_get_the_zero_row(tmp_path):
    vectors = np.vstack([np.zeros(4), np.ones(4), 2 * np.ones(4)]).astype(np.float32)
    save_user_table(tmp_path, {"alice": 1, "42": 2}, vectors)
    table = UserTable.load(tmp_path)
    got, known = table.lookup(["42", "nobody", "alice"])
    assert known == [True, False, True]
    np.testing.assert_array_equal(got, vectors[[2, 0, 1]])
    assert got.dtype == np.float32 and table.num_users == 2 and table.d_model == 4
    assert isinstance(table.vectors, np.memmap)


def test_row_zero_must_be_zero_and_rows_in_range(tmp_path):
    with pytest.raises(UserTableError, match="row 0"):
        save_user_table(tmp_path, {"a": 1}, np.ones((2, 3), dtype=np.float32))
    with pytest.raises(UserTableError, match=r"1\.\.num_users"):
        save_user_table(tmp_path, {"a": 2}, np.zeros((2, 3), dtype=np.float32))
