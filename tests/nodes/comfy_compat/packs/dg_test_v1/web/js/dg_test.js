// A web extension of the test pack: the client imports it from /extensions/dg_test_v1/js/dg_test.js.
export const dgTestLoaded = true;
