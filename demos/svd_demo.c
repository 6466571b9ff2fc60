/* svd_demo.c — placeholder */
int main(void) { return 0; }
